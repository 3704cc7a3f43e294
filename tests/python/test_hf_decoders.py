"""Decoders from Hugging Face directories: the synthetic llama and qwen2 models written out
as HF directories (tests/tools/gguf_to_hf.py: safetensors with HF's names and layouts,
config.json, tokenizer.json) give llama.cpp's reference logits through kiln's HF loader:
llama's q/k rows permuted into GGUF's rotary layout, qwen2's biases, sharded and BF16
weights, the byte-level BPE of tokenizer.json, and tokenizer_config.json's chat template.

Checked once by hand with transformers 5.x (torch, CPU): transformers itself reads these
directories to logits within 0.009 of llama.cpp's reference, so the layouts are HF's."""
import json
import subprocess
import sys

import httpx
import jinja2
import pytest

from kiln_testing import ROOT, SHARED, Server, run_kiln
from logits_match import mismatches, tolerance_for

SYNTHETIC = SHARED / "models" / "synthetic"
CHATML = SHARED / "chat-templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"


def to_hf(src, out, *args):
    subprocess.run([sys.executable, str(ROOT / "tests" / "tools" / "gguf_to_hf.py"), str(src),
                    str(out), *map(str, args)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    return to_hf(SYNTHETIC / "qwen2.f16.gguf", tmp_path_factory.mktemp("qwen2"), "--shards", 2,
                 "--chat-template", CHATML)


def check_reference(kiln_bin, model, ref_name, by_ids):
    ref = json.loads((SYNTHETIC / "reference" / ref_name).read_text())
    tol = tolerance_for(ref["model"])
    for case in ref["cases"]:
        source = ["--token-ids", ",".join(map(str, case["prompt_tokens"]))] if by_ids else \
            ["--prompt", case["prompt"]]
        ours = json.loads(run_kiln(kiln_bin, "logits", "--model-path", model, *source,
                                   "--top-k", 40, "--n-predict", len(case["greedy"]),
                                   "--threads", 2))
        errors = mismatches(ours, case, tol)
        assert not errors, f"{ref_name} / {case['prompt'][:30]!r}:\n" + "\n".join(errors[:10])


def test_qwen2_directory_matches_llama_cpp(kiln_bin, qwen2_dir):
    """Tokenized from tokenizer.json: the prompt ids must be llama.cpp's too."""
    check_reference(kiln_bin, qwen2_dir, "qwen2.f16.json", by_ids=False)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_llama_directory_matches_llama_cpp(kiln_bin, tmp_path, dtype):
    """SentencePiece stays GGUF-only, so the directory borrows qwen2's BPE and is fed ids."""
    d = to_hf(SYNTHETIC / f"llama-gqa.{dtype}.gguf", tmp_path / "llama",
              "--tokenizer-from", SYNTHETIC / "qwen2.f16.gguf")
    check_reference(kiln_bin, d, f"llama-gqa.{dtype}.json", by_ids=True)


def test_directory_converts_to_gguf(kiln_bin, qwen2_dir, tmp_path):
    out = tmp_path / "qwen2-q8_0.gguf"
    run_kiln(kiln_bin, "quantize", qwen2_dir, out, "q8_0")
    info = run_kiln(kiln_bin, "info", out).decode()
    assert "tokenizer.ggml.pre_regex" in info and "Q8_0" in info
    ref = json.loads((SYNTHETIC / "reference" / "qwen2.f16.json").read_text())
    for case in ref["cases"]:  # the README's tolerance for quantized types
        ours = json.loads(run_kiln(kiln_bin, "logits", "--model-path", out, "--prompt",
                                   case["prompt"], "--top-k", 40, "--n-predict",
                                   len(case["greedy"])))
        assert not mismatches(ours, case, 1.0), case["prompt"]


def test_chat_template_comes_from_tokenizer_config(kiln_bin, qwen2_dir):
    srv = Server(qwen2_dir)
    try:
        messages = [{"role": "user", "content": "Hello there"}]
        got = httpx.post(srv.base_url + "/tokenize", json={"messages": messages}).json()["tokens"]
        text = jinja2.Environment().from_string(CHATML.read_text()).render(
            messages=messages, add_generation_prompt=True)
        want = httpx.post(srv.base_url + "/tokenize",
                          json={"content": text, "add_special": False}).json()["tokens"]
        assert got == want and len(got) > 10
    finally:
        assert srv.stop() == 0, srv.log_text()


def test_bos_from_a_post_processor_sequence(kiln_bin, qwen2_dir, tmp_path):
    """Llama 3's tokenizer.json adds <|begin_of_text|> by a TemplateProcessing inside a
    Sequence, with no add_bos_token in tokenizer_config.json; here "!" (id 0) plays it."""
    import shutil
    d = tmp_path / "bos"
    shutil.copytree(qwen2_dir, d)
    tok = json.loads((d / "tokenizer.json").read_text())
    plain = [int(x) for x in run_kiln(kiln_bin, "tokenize", "--model-path", d, "--prompt",
                                      "Hello").split()]
    tok["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
         "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "!", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [], "special_tokens": {"!": {"id": "!", "ids": [0], "tokens": ["!"]}}}]}
    (d / "tokenizer.json").write_text(json.dumps(tok))
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    del cfg["add_bos_token"]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    got = [int(x) for x in run_kiln(kiln_bin, "tokenize", "--model-path", d, "--prompt",
                                    "Hello").split()]
    assert got == [0] + plain
