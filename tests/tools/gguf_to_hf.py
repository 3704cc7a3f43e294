#!/usr/bin/env python3
"""Writes a llama or qwen2 GGUF model (F32 / F16 / BF16 weights) as a Hugging Face
directory: safetensors with HF's tensor names and layouts (llama's q/k rows un-permuted back
to HF's rotate-half order, the inverse of llama.cpp's converter), config.json, and a
byte-level BPE tokenizer.json + tokenizer_config.json.

    gguf_to_hf.py MODEL.gguf OUT_DIR [--tokenizer-from OTHER.gguf] [--shards N]
                  [--chat-template FILE]

--tokenizer-from takes the BPE vocabulary of another GGUF (for a model whose own tokenizer
is SentencePiece, which kiln reads from GGUF only). Used by tests/python/test_hf_decoders.py."""
import argparse
import json
import pathlib
import struct

import numpy as np
import gguf

DTYPES = {gguf.GGMLQuantizationType.F32: ("F32", np.float32),
          gguf.GGMLQuantizationType.F16: ("F16", np.float16),
          gguf.GGMLQuantizationType.BF16: ("BF16", np.uint16)}

LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def field(r, key, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


def hf_name(name):
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    _, layer, rest = name.split(".", 2)
    return f"model.layers.{layer}.{LAYER_NAMES[rest]}"


def unpermute(w, n_head):
    """llama.cpp stores q/k as w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2); undo it."""
    rows, cols = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def write_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def tokenizer_files(r, out, chat_template=None):
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type", [1] * len(tokens))
    merges = field(r, "tokenizer.ggml.merges")
    if field(r, "tokenizer.ggml.model") != "gpt2" or merges is None:
        raise SystemExit("the tokenizer source must be a byte-level BPE (gpt2) GGUF")
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": types[i] == 3}
             for i, t in enumerate(tokens) if types[i] in (3, 4)]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                             "trim_offsets": True, "use_regex": True},
           "post_processor": {"type": "ByteLevel", "add_prefix_space": False,
                              "trim_offsets": False, "use_regex": True},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": "", "end_of_word_suffix": "",
                     "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": {t: i for i, t in enumerate(tokens)}, "merges": list(merges)}}
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
           "model_max_length": 2048}
    eos = field(r, "tokenizer.ggml.eos_token_id")
    if eos is not None:
        cfg["eos_token"] = tokens[eos]
    if chat_template:
        cfg["chat_template"] = pathlib.Path(chat_template).read_text()
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--tokenizer-from")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--chat-template")
    a = ap.parse_args()
    r = gguf.GGUFReader(a.model)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    arch = field(r, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise SystemExit(f"{arch}: only llama and qwen2 are written")
    hp = lambda k, d=None: field(r, f"{arch}.{k}", d)  # noqa: E731
    n_head, n_embd = hp("attention.head_count"), hp("embedding_length")
    n_head_kv = hp("attention.head_count_kv", n_head)
    tensors = {}
    for t in r.tensors:
        if t.tensor_type not in DTYPES:
            raise SystemExit(f"{t.name}: {t.tensor_type.name} weights cannot go into safetensors")
        dtype, np_type = DTYPES[t.tensor_type]
        shape = [int(x) for x in reversed(t.shape)]
        arr = np.asarray(t.data).view(np_type).reshape(shape)
        if arch == "llama" and t.name.endswith("attn_q.weight"):
            arr = unpermute(arr, n_head)
        if arch == "llama" and t.name.endswith("attn_k.weight"):
            arr = unpermute(arr, n_head_kv)
        tensors[hf_name(t.name)] = (dtype, arr)
    names = list(tensors)
    if a.shards == 1:
        write_safetensors(out / "model.safetensors", tensors)
    else:
        weight_map = {}
        for s in range(a.shards):
            fname = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
            part = names[s::a.shards]
            write_safetensors(out / fname, {n: tensors[n] for n in part})
            weight_map.update({n: fname for n in part})
        total = sum(np.asarray(arr).nbytes for _, arr in tensors.values())
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}))
    config = {"architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"],
              "model_type": arch, "hidden_size": n_embd,
              "intermediate_size": hp("feed_forward_length"),
              "num_hidden_layers": hp("block_count"), "num_attention_heads": n_head,
              "num_key_value_heads": n_head_kv,
              "max_position_embeddings": hp("context_length", 2048),
              "rms_norm_eps": hp("attention.layer_norm_rms_epsilon", 1e-6),
              "rope_theta": hp("rope.freq_base", 10000.0),
              "tie_word_embeddings": "lm_head.weight" not in tensors,
              "vocab_size": len(field(r, "tokenizer.ggml.tokens")), "torch_dtype": "float32"}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer_files(gguf.GGUFReader(a.tokenizer_from) if a.tokenizer_from else r, out,
                    a.chat_template)
    print(out)


if __name__ == "__main__":
    main()
