"""`kiln quantize` writes GGUF files that the `gguf` package reads, with the recipes and the
quality of llama.cpp's: the 32-element types byte-identical to the reference quantizers,
the K-quant mixes typed tensor by tensor as llama.cpp's files in ../shared/models/synthetic,
with weight and logit errors no worse than theirs."""
import json
import subprocess

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize

from kiln_testing import SHARED, run_kiln

SYNTH = SHARED / "models" / "synthetic"
F32 = SYNTH / "llama-gqa.f32.gguf"
# Recipes that llama.cpp also made from llama-gqa.f32.gguf (its files are the yardstick).
WITH_LLAMA_CPP_FILE = ["q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"]
# Per-tensor squared error of ours over llama.cpp's, summed over the model: measured
# 1.009 (q4_k_m), 0.985 (q5_k_m), 0.955 (q6_k), 1.000 (q4_0, q8_0).
MAX_ERROR_RATIO = 1.05


@pytest.fixture(scope="module")
def quantized(kiln_bin, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("quantized")
    paths = {}
    for qtype in WITH_LLAMA_CPP_FILE + ["q4_1", "q5_0", "q5_1", "f16", "bf16"]:
        paths[qtype] = out_dir / f"llama-gqa.{qtype}.gguf"
        run_kiln(kiln_bin, "quantize", F32, paths[qtype], qtype, "--threads", 2)
    return paths


def tensors(path):
    return {t.name: t for t in GGUFReader(path).tensors}


def as_f32(t):
    return dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "f16", "bf16"])
def test_simple_types_are_byte_identical_to_reference(quantized, qtype):
    source = tensors(F32)
    checked = 0
    for name, t in tensors(quantized[qtype]).items():
        src = source[name]
        if t.tensor_type == src.tensor_type:
            continue  # norms stay F32
        if t.tensor_type == GGMLQuantizationType.Q6_K:
            continue  # the output matrix; K-quants are checked against llama.cpp's files
        data = np.asarray(src.data).reshape(tuple(int(n) for n in reversed(src.shape)))
        expected = quantize(data, t.tensor_type)
        same = np.array_equal(np.asarray(t.data).view(np.uint8).reshape(-1),
                              np.ascontiguousarray(expected).view(np.uint8).reshape(-1))
        assert same, f"{qtype}: {name} ({t.tensor_type.name}) differs from gguf.quants.quantize"
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("qtype", WITH_LLAMA_CPP_FILE)
def test_recipe_and_error_match_llama_cpp(quantized, qtype):
    source, ours, theirs = tensors(F32), tensors(quantized[qtype]), tensors(
        SYNTH / f"llama-gqa.{qtype}.gguf")
    assert sorted(ours) == sorted(theirs)
    err_ours = err_theirs = 0.0
    for name, t in ours.items():
        assert t.tensor_type == theirs[name].tensor_type, (
            f"{qtype}: {name} is {t.tensor_type.name}, llama.cpp made it "
            f"{theirs[name].tensor_type.name}")
        ref = as_f32(source[name])
        err_ours += float(((as_f32(t) - ref) ** 2).sum())
        err_theirs += float(((as_f32(theirs[name]) - ref) ** 2).sum())
    assert err_ours <= MAX_ERROR_RATIO * err_theirs, (qtype, err_ours / err_theirs)


@pytest.mark.parametrize("qtype", WITH_LLAMA_CPP_FILE)
def test_metadata_copied_and_file_type_set(quantized, qtype):
    def fields(path):
        r = GGUFReader(path)
        return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    src, ours = fields(F32), fields(quantized[qtype])
    theirs = fields(SYNTH / f"llama-gqa.{qtype}.gguf")
    rewritten = {"general.file_type", "general.quantization_version", "general.alignment"}
    for key, value in src.items():
        if key not in rewritten:
            assert ours.get(key) == value, key
    assert ours["general.file_type"] == theirs["general.file_type"]
    assert ours["general.quantization_version"] == 2


def logit_error(run, ref_f32):
    """Mean absolute difference from the F32 model's logits over its top tokens."""
    diffs = []
    for case, f32_case in zip(run["cases"], ref_f32["cases"]):
        for pos, f32_pos in zip(case["positions"], f32_case["positions"]):
            top = dict((tid, logit) for tid, logit in pos["top"])
            for tid, logit in f32_pos["top"]:
                diffs.append(abs(top[tid] - logit) if tid in top else 10.0)
    return float(np.mean(diffs))


@pytest.mark.parametrize("qtype", ["q4_0", "q4_k_m", "q5_k_m", "q6_k"])
def test_model_quality_no_worse_than_llama_cpp(kiln_bin, quantized, qtype):
    """kiln on its own file against kiln on llama.cpp's file, both against the F32 model."""
    ref_f32 = json.loads((SYNTH / "reference" / "llama-gqa.f32.json").read_text())

    def run(path):
        cases = []
        for case in ref_f32["cases"]:
            out = run_kiln(kiln_bin, "logits", "--model-path", path, "--prompt",
                           case["prompt"], "--top-k", 40, "--n-predict", 1, "--threads", 2)
            cases.append(json.loads(out))
        return {"cases": cases}

    ours = logit_error(run(quantized[qtype]), ref_f32)
    theirs = logit_error(run(SYNTH / f"llama-gqa.{qtype}.gguf"), ref_f32)
    # Measured ratios 1.004 (q4_0), 0.998 (q4_k_m), 0.999 (q5_k_m), 0.978 (q6_k).
    assert ours <= 1.1 * theirs, (qtype, ours, theirs)


def test_llama_cpp_loads_our_files(quantized):
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (it is optional: see "
        "tests/python/make_real_model_expectations.py)")
    for qtype in ["q4_k_m", "q5_k_m", "q6_k", "q4_0", "q8_0"]:
        llm = llama_cpp.Llama(model_path=str(quantized[qtype]), n_ctx=64, verbose=False)
        assert len(llm.tokenize(b"Once upon a time")) > 1
        out = llm("Once upon a time", max_tokens=4, temperature=0)
        assert out["usage"]["completion_tokens"] >= 1


def quantize_fails(kiln_bin, *args):
    proc = subprocess.run([str(kiln_bin), "quantize", *map(str, args)], capture_output=True,
                          text=True)
    assert proc.returncode != 0
    return proc.stderr


def test_refuses_unknown_type(kiln_bin, tmp_path):
    out = tmp_path / "out.gguf"
    assert "unknown quantization type 'q3_x'" in quantize_fails(kiln_bin, F32, out, "q3_x")
    assert not out.exists()


def test_refuses_requantizing_unless_asked(kiln_bin, tmp_path):
    out = tmp_path / "out.gguf"
    err = quantize_fails(kiln_bin, SYNTH / "llama-gqa.q8_0.gguf", out, "q4_k_m")
    assert "already Q8_0" in err and "--allow-requantize" in err
    assert not out.exists() and not (tmp_path / "out.gguf.part").exists()
    run_kiln(kiln_bin, "quantize", SYNTH / "llama-gqa.q8_0.gguf", out, "q4_k_m",
             "--allow-requantize")
    assert GGUFReader(out).fields["general.file_type"].contents() == 15


def test_refuses_broken_input(kiln_bin, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(F32.read_bytes()[:5000])
    out = tmp_path / "out.gguf"
    assert "bad.gguf" in quantize_fails(kiln_bin, bad, out, "q8_0")
    assert not out.exists()


def test_moe_and_qwen2_quantize_and_run(kiln_bin, tmp_path):
    """3-D expert tensors and biased attention survive quantization and still run."""
    for name in ["llama-moe.f16.gguf", "qwen2.f16.gguf"]:
        out = tmp_path / name.replace("f16", "q4_k_m")
        run_kiln(kiln_bin, "quantize", SYNTH / name, out, "q4_k_m")
        types = {t.tensor_type for t in GGUFReader(out).tensors}
        assert GGMLQuantizationType.Q4_K in types
        logits = json.loads(run_kiln(kiln_bin, "logits", "--model-path", out, "--prompt",
                                     "Hello world", "--n-predict", 4))
        assert len(logits["greedy"]) == 4
