"""Embedding models: kiln's vectors against sentence-transformers' (computed once with torch
by data/embeddings/make_reference.py and committed), from a Hugging Face directory and from
kiln's GGUF conversion of it; a tiny BERT exercises CLS pooling without normalization,
sharded F16/BF16 safetensors and a vocab.txt tokenizer; bad directories are refused by name;
decoders embed too."""
import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from kiln_testing import SHARED, cosine, fetch_model, make_tiny_bert, run_kiln

DATA = pathlib.Path(__file__).parent / "data" / "embeddings"
MIN_COSINE = 0.999


def embed(kiln_bin, model, texts):
    out = run_kiln(kiln_bin, "embed", "--model-path", model, *texts).decode()
    vectors = [np.array(json.loads(line)) for line in out.splitlines()]
    assert len(vectors) == len(texts)
    return vectors


def check_against_reference(kiln_bin, model, ref):
    got = embed(kiln_bin, model, ref["texts"])
    for text, g, r in zip(ref["texts"], got, ref["vectors"]):
        assert len(g) == len(r)
        c = cosine(g, np.array(r))
        assert c >= MIN_COSINE, f"{text!r}: cosine {c:.6f}"
    return got


@pytest.fixture(scope="module")
def minilm():
    return pathlib.Path(fetch_model("all-minilm-l6-v2"))


@pytest.fixture(scope="module")
def minilm_ref():
    return json.loads((DATA / "all-MiniLM-L6-v2.json").read_text())


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_minilm_directory_matches_sentence_transformers(kiln_bin, minilm, minilm_ref):
    got = check_against_reference(kiln_bin, minilm, minilm_ref)
    for g in got:  # the pipeline ends with Normalize
        assert abs(np.linalg.norm(g) - 1) < 1e-5


def test_minilm_tokens_match_hugging_face(kiln_bin, minilm, minilm_ref):
    for text, want in zip(minilm_ref["texts"], minilm_ref["tokens"]):
        got = [int(x) for x in run_kiln(kiln_bin, "tokenize", "--model-path", minilm,
                                        "--prompt", text).split()]
        assert got == want, text


def test_minilm_gguf_conversion_matches(kiln_bin, minilm, minilm_ref, tmp_path):
    gguf = tmp_path / "minilm-f16.gguf"
    run_kiln(kiln_bin, "quantize", minilm, gguf, "f16")
    info = run_kiln(kiln_bin, "info", gguf).decode()
    assert '"bert"' in info and "token_types.weight" in info and "bert.pooling_type" in info
    check_against_reference(kiln_bin, gguf, minilm_ref)


def test_tiny_bert_cls_pooling_shards_and_vocab_txt(kiln_bin, tiny_bert):
    ref = json.loads((DATA / "tiny-bert-cls.json").read_text())
    assert all(len(t) <= ref["max_seq_length"] for t in ref["tokens"])  # nothing truncated
    for text, want in zip(ref["texts"], ref["tokens"]):
        got = [int(x) for x in run_kiln(kiln_bin, "tokenize", "--model-path", tiny_bert,
                                        "--prompt", text).split()]
        assert got == want, text
    got = check_against_reference(kiln_bin, tiny_bert, ref)
    for g, r in zip(got, ref["vectors"]):  # no Normalize module: the raw CLS state
        assert abs(np.linalg.norm(g) / np.linalg.norm(r) - 1) < 1e-3
        assert np.linalg.norm(g) > 2


def test_embeddings_do_not_depend_on_the_batch(kiln_bin, minilm, minilm_ref):
    texts = minilm_ref["texts"]
    together = embed(kiln_bin, minilm, texts)
    for i in (0, 6, 9):
        alone = embed(kiln_bin, minilm, [texts[i]])[0]
        assert np.array_equal(alone, together[i])


def test_decoder_embeddings_are_last_token_and_normalized(kiln_bin):
    model = SHARED / "models" / "synthetic" / "qwen2.f16.gguf"
    texts = ["Hello world", "A different sentence, somewhat longer than the first one."]
    together = embed(kiln_bin, model, texts)
    for t, v in zip(texts, together):
        assert len(v) == 256 and abs(np.linalg.norm(v) - 1) < 1e-5
        assert np.array_equal(embed(kiln_bin, model, [t])[0], v)
    assert cosine(together[0], together[1]) < 0.999


def refused(kiln_bin, model, *args):
    proc = subprocess.run([str(kiln_bin), "embed", "--model-path", str(model), *args, "x"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    return proc.stderr


def test_bad_directories_are_refused_by_name(kiln_bin, tiny_bert, tmp_path):
    def copy(name):
        d = tmp_path / name
        shutil.copytree(tiny_bert, d)
        return d

    d = copy("arch")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, model_type="gpt_neox")))
    assert "model_type 'gpt_neox' is not supported" in refused(kiln_bin, d)

    d = copy("json")
    (d / "config.json").write_text("{not json")
    assert "config.json: not valid JSON" in refused(kiln_bin, d)

    d = copy("shard")
    (d / "model-00002-of-00002.safetensors").unlink()
    assert "model-00002-of-00002.safetensors: cannot open" in refused(kiln_bin, d)

    d = copy("truncated")
    shard = d / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    assert "outside the data section" in refused(kiln_bin, d)

    d = copy("missing")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    del index["weight_map"]
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "missing object 'weight_map'" in refused(kiln_bin, d)

    d = copy("shape")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, intermediate_size=96)))
    assert "blk.0.ffn_up.weight" in refused(kiln_bin, d)

    d = copy("dense")
    modules = json.loads((d / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (d / "modules.json").write_text(json.dumps(modules))
    assert "module 'sentence_transformers.models.Dense' is not supported" in refused(kiln_bin, d)

    d = copy("notok")
    (d / "vocab.txt").unlink()
    assert "no tokenizer.json or vocab.txt" in refused(kiln_bin, d)


def test_embedding_model_cannot_generate(kiln_bin, tiny_bert):
    proc = subprocess.run([str(kiln_bin), "generate", "--model-path", str(tiny_bert), "-p", "x"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "embedding model" in proc.stderr


def test_input_longer_than_the_model_is_refused(kiln_bin, tiny_bert):
    proc = subprocess.run([str(kiln_bin), "embed", "--model-path", str(tiny_bert), "a " * 200],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "more than the model's limit of 128" in proc.stderr


def test_pooling_can_be_chosen(kiln_bin, tiny_bert):
    """--pooling overrides the model's: one token pools the same every way, more do not."""
    def vec(pooling, text):
        out = run_kiln(kiln_bin, "embed", "--model-path", tiny_bert, "--pooling", pooling,
                       "--no-special", text)
        return np.array(json.loads(out))

    single = [vec(p, "the") for p in ("mean", "cls", "last")]
    assert np.array_equal(single[0], single[1]) and np.array_equal(single[1], single[2])
    several = [vec(p, "the quick brown fox") for p in ("mean", "cls", "last")]
    assert min(1 - cosine(a, b) for a, b in [(several[0], several[1]), (several[1], several[2]),
                                             (several[0], several[2])]) > 1e-4
    assert "not one of mean, cls, last" in refused(kiln_bin, tiny_bert, "--pooling", "max")
