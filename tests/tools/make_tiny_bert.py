#!/usr/bin/env python3
"""Writes a tiny BERT model as a Hugging Face directory, with weights from a fixed formula
(no random generator, so every numpy gives the same bytes): 2 layers, 64 wide, 4 heads,
a 3000-token slice of bge's WordPiece vocabulary as vocab.txt (no tokenizer.json), weights
sharded over two safetensors files (F16 and BF16) with model.safetensors.index.json, and a
sentence-transformers pipeline of CLS pooling without normalization.

    make_tiny_bert.py OUT_DIR

tests/python/test_embeddings.py builds it; tests/python/data/embeddings/make_reference.py
computed sentence-transformers' vectors for it once (tiny-bert-cls.json)."""
import json
import os
import pathlib
import struct
import sys

import numpy as np
import gguf

N_VOCAB, N_EMBD, N_LAYER, N_HEAD, N_FF, N_POS = 3000, 64, 2, 4, 128, 128


def weights():
    """name -> float32 array, HF's names and shapes ([out, in] for linear layers)."""
    shapes = {
        "embeddings.word_embeddings.weight": (N_VOCAB, N_EMBD),
        "embeddings.position_embeddings.weight": (N_POS, N_EMBD),
        "embeddings.token_type_embeddings.weight": (2, N_EMBD),
        "embeddings.LayerNorm.weight": (N_EMBD,),
        "embeddings.LayerNorm.bias": (N_EMBD,),
    }
    for i in range(N_LAYER):
        p = f"encoder.layer.{i}."
        for name, out_dim, in_dim in [("attention.self.query", N_EMBD, N_EMBD),
                                      ("attention.self.key", N_EMBD, N_EMBD),
                                      ("attention.self.value", N_EMBD, N_EMBD),
                                      ("attention.output.dense", N_EMBD, N_EMBD),
                                      ("intermediate.dense", N_FF, N_EMBD),
                                      ("output.dense", N_EMBD, N_FF)]:
            shapes[p + name + ".weight"] = (out_dim, in_dim)
            shapes[p + name + ".bias"] = (out_dim,)
        for name in ["attention.output.LayerNorm", "output.LayerNorm"]:
            shapes[p + name + ".weight"] = (N_EMBD,)
            shapes[p + name + ".bias"] = (N_EMBD,)
    out = {}
    for k, (name, shape) in enumerate(sorted(shapes.items())):
        n = int(np.prod(shape))
        x = np.sin(np.arange(n, dtype=np.float64) * 0.61803 + k * 1.7)
        if name.endswith("LayerNorm.weight"):
            w = 1.0 + 0.2 * x
        elif name.endswith(".bias") or "LayerNorm" in name:
            w = 0.05 * x
        else:
            w = x * (1.5 / np.sqrt(shape[-1]))
        out[name] = w.astype(np.float32).reshape(shape)
    return out


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, raw bytes)."""
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(h)) + h + data)


def bf16_bytes(a):
    bits = a.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return rounded.tobytes()


def vocab(shared):
    """The first N_VOCAB tokens of bge's vocabulary, back in vocab.txt's spelling."""
    r = gguf.GGUFReader(str(shared / "tokenizer" / "ggml-vocab-bert-bge.gguf"))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()[:N_VOCAB]
    out = []
    for t in tokens:
        if t.startswith("[") and t.endswith("]"):
            out.append(t)
        elif t.startswith("\u2581"):
            out.append(t[1:])
        else:
            out.append("##" + t)
    return out


def main():
    out = pathlib.Path(sys.argv[1])
    shared = pathlib.Path(os.environ.get("KILN_SHARED_DIR",
                                         pathlib.Path(__file__).resolve().parents[3] / "shared"))
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    w = weights()
    names = sorted(w)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for i, (file, part) in enumerate(shards.items()):
        tensors = {}
        for name in part:
            a = w[name]
            tensors[name] = ("F16", a.shape, a.astype(np.float16).tobytes()) if i == 0 else \
                ("BF16", a.shape, bf16_bytes(a))
            weight_map[name] = file
        write_safetensors(out / file, tensors)
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {},
                                                                  "weight_map": weight_map}))
    (out / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": N_EMBD,
        "num_hidden_layers": N_LAYER, "num_attention_heads": N_HEAD,
        "intermediate_size": N_FF, "max_position_embeddings": N_POS, "type_vocab_size": 2,
        "vocab_size": N_VOCAB, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute", "pad_token_id": 0}, indent=1))
    (out / "vocab.txt").write_text("\n".join(vocab(shared)) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": N_POS}))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}]))
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": N_EMBD, "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": N_POS,
                                                                "do_lower_case": False}))
    print(out)


if __name__ == "__main__":
    main()
