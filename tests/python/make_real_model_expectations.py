#!/usr/bin/env python3
"""Writes data/real_models.json: llama.cpp's prompt tokens and greedy continuation (32 tokens,
with the top-1/top-2 logit margin at each step) for fixed prompts on the real models that
scripts/fetch-model provides. Run once with llama-cpp-python installed (outside CI):

    python -m venv /tmp/llamacpp-venv && /tmp/llamacpp-venv/bin/pip install llama-cpp-python
    /tmp/llamacpp-venv/bin/python tests/python/make_real_model_expectations.py
"""
import json
import pathlib
import subprocess
import sys

import llama_cpp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
    "Grüße aus Köln! 日本語のテキスト and emoji 🌍 in one line:",
]
N_PREDICT = 32


def model_path(name):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch-model"), name],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def expectations(name):
    path = model_path(name)
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, logits_all=True,
                          verbose=False)
    cases = []
    for prompt in PROMPTS:
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        llm.reset()
        llm.eval(tokens)
        greedy, margins = [], []
        for _ in range(N_PREDICT):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            order = np.argsort(-logits)
            best = int(order[0])
            greedy.append(best)
            margins.append(round(float(logits[order[0]] - logits[order[1]]), 4))
            llm.eval([best])
        cases.append({"prompt": prompt, "prompt_tokens": tokens, "greedy": greedy,
                      "greedy_margins": margins})
    return {"model": name, "llama_cpp_python": llama_cpp.__version__, "cases": cases}


if __name__ == "__main__":
    data = [expectations(n) for n in ("smollm2-135m-instruct", "gemma3-270m")]
    out = ROOT / "tests" / "python" / "data" / "real_models.json"
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
