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


def test_rounds_interleave_the_levels_and_report_the_median_round(server):
    # this --concurrency comes after run_serve_load's own and replaces it (argparse's last wins)
    out = run_serve_load(server, "--raw-chunks", "--rounds", "3", "--concurrency", "1", "2")
    assert out["rounds"] == 3
    assert [level["concurrency"] for level in out["levels"]] == [1, 2]
    for level in out["levels"]:
        rounds = level["rounds_tokens_per_s"]
        assert len(rounds) == 3 and all(r > 0 for r in rounds)
        assert level["output_tokens_per_s"] == sorted(rounds)[1]
        assert level["output_tokens"] == 15


def test_rounds_below_one_is_a_usage_error(server):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serve_load"), "--base-url", server.base_url + "/v1",
         "--rounds", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--rounds must be at least 1" in proc.stderr
