#!/usr/bin/env python3
"""Writes a fuzzer's seed corpus: `make_corpus.py gguf DIR` (small valid GGUF files made
with the gguf package), `jinja DIR` (the real chat templates) or `request DIR` (OpenAI
request bodies) or `safetensors DIR` (small valid safetensors files).
Run by `make fuzz`; the outputs are not committed."""
import os
import pathlib
import shutil
import sys

import numpy as np
import gguf

target = sys.argv[1]
out = pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
shared = pathlib.Path(os.environ.get("KILN_SHARED_DIR",
                                     pathlib.Path(__file__).resolve().parents[3] / "shared"))

if target == "request":
    import json
    bodies = [
        {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
         "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "n": 2,
         "stop": ["\n", "END"], "seed": 42, "presence_penalty": 0.5, "frequency_penalty": 0.5,
         "logit_bias": {"15": -100, "42": 5}, "logprobs": True, "top_logprobs": 3,
         "stream": True, "stream_options": {"include_usage": True}},
        {"prompt": ["a", "b"], "echo": True, "logprobs": 2, "max_tokens": 0},
        {"prompt": [[1, 2, 3], [4, 5]], "stop": "x", "response_format": {"type": "text"}},
        {"prompt": [1, 2, 3], "max_completion_tokens": 5, "ignore_eos": True},
        {"input": ["Text to embed", "Another"], "encoding_format": "base64", "dimensions": 8},
        {"input": [[101, 7592, 102], [5]], "truncate_prompt_tokens": -1, "model": "m"},
    ]
    for i, body in enumerate(bodies):
        (out / f"request{i}.json").write_text(json.dumps(body))
    print(f"wrote seeds to {out}")
    sys.exit(0)

if target == "safetensors":
    import json
    import struct

    def write(name, tensors, meta=None):
        header, data = {}, b""
        if meta is not None:
            header["__metadata__"] = meta
        for tname, (dtype, shape, raw) in tensors.items():
            header[tname] = {"dtype": dtype, "shape": shape,
                             "data_offsets": [len(data), len(data) + len(raw)]}
            data += raw
        h = json.dumps(header).encode()
        (out / name).write_bytes(struct.pack("<Q", len(h)) + h + data)

    write("two.safetensors", {"w": ("F32", [2, 2], np.arange(4, dtype=np.float32).tobytes()),
                              "b": ("BF16", [3], bytes(6))}, {"format": "pt"})
    write("kinds.safetensors", {"i": ("I64", [1, 2], bytes(16)), "e": ("F16", [0], b""),
                                "s": ("U8", [], b"x")})
    print(f"wrote seeds to {out}")
    sys.exit(0)

if target == "jinja":
    for template in (shared / "chat-templates").glob("*.jinja"):
        shutil.copy(template, out / template.name)
    print(f"wrote seeds to {out}")
    sys.exit(0)

w = gguf.GGUFWriter(str(out / "tiny.gguf"), "llama")
w.add_block_count(1)
w.add_string("general.name", "tiny")
w.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
w.add_array("tokenizer.ggml.scores", [0.0, 1.0, 2.0])
w.add_tensor("vec", np.arange(8, dtype=np.float32))
w.add_tensor("mat", np.ones((2, 32), dtype=np.float16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

w = gguf.GGUFWriter(str(out / "meta-only.gguf"), "qwen2")
w.add_uint64("x.u64", 1 << 40)
w.add_int8("x.i8", -3)
w.add_bool("x.bool", True)
w.add_float64("x.f64", 2.5)
w.write_header_to_file()
w.write_kv_data_to_file()
w.close()
print(f"wrote seeds to {out}")
