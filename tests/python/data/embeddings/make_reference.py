#!/usr/bin/env python3
"""Computes the reference embeddings that tests/python/test_embeddings.py compares kiln with:
sentence-transformers (torch, CPU) on the model directory given, for TEXTS below. Run once
per model and commit the JSON it writes; CI does not need torch.

    python make_reference.py MODEL_DIR OUT.json

Made with sentence-transformers 5.x / torch 2.x in a scratch venv:
    python -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install sentence-transformers
"""
import json
import sys

from sentence_transformers import SentenceTransformer

TEXTS = [
    "Text to embed",
    "Another text",
    "The quick brown fox jumps over the lazy dog.",
    "Führer, naïve café: accents are stripped by BERT's normalizer!",
    "深度学习 and 機械学習 are split per character.",
    "  leading and trailing   whitespace\t\n",
    "A longer passage about continuous batching: many requests share one forward pass, "
    "the key/value cache is paged in blocks of sixteen tokens, and a prefix that several "
    "prompts have in common is computed once and then reused by reference counting.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x",
    "🦙 emoji and symbols: $100 + 5% = ?",
]

model_dir, out = sys.argv[1], sys.argv[2]
model = SentenceTransformer(model_dir, device="cpu")
vectors = model.encode(TEXTS, convert_to_numpy=True)
tokens = [model.tokenizer(t)["input_ids"] for t in TEXTS]
json.dump({"texts": TEXTS, "tokens": tokens, "vectors": [[float(x) for x in v] for v in vectors],
           "max_seq_length": model.max_seq_length},
          open(out, "w"), indent=None)
print(f"wrote {len(TEXTS)} vectors of {vectors.shape[1]} to {out}")
