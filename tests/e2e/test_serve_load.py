"""bench/serve_load against the session's server: its two ways of reading a stream (typed
chunk objects, and --raw-chunks) count the same tokens and report the same fields."""
import json
import subprocess
import sys

from e2e_support import ROOT


def run_serve_load(server, *extra):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serve_load"), "--base-url", server.base_url + "/v1",
         "--concurrency", "2", "--requests", "3", "--max-tokens", "5", "--ignore-eos", "--json",
         *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_raw_and_typed_chunks_count_the_same_tokens(server):
    typed = run_serve_load(server)
    raw = run_serve_load(server, "--raw-chunks")
    assert (typed["chunks"], raw["chunks"]) == ("typed", "raw")
    for out in (typed, raw):
        level = out["levels"][0]
        assert level["requests"] == 3 and level["output_tokens"] == 15
        assert level["output_tokens_per_s"] > 0
        assert 0 < level["ttft_p50_ms"] <= level["ttft_p99_ms"]
        # NaN (no content chunk seen) fails these comparisons
        assert 0 <= level["itl_p50_ms"] <= level["itl_p99_ms"]
