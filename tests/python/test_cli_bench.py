"""`kiln bench --json` reports pp and tg speeds in llama-bench's shape, and the roofline
fraction from its own bandwidth measurement."""
import json
import subprocess

from kiln_testing import SHARED, run_kiln


def test_bench_json(kiln_bin):
    model = SHARED / "models" / "synthetic" / "llama-gqa.q4_0.gguf"
    out = json.loads(run_kiln(kiln_bin, "bench", "--model-path", model, "-p", 32, "-n", 8, "-r", 2,
                              "--json"))
    tests = {r["test"]: r for r in out["results"]}
    assert set(tests) == {"pp32", "tg8"}
    for r in tests.values():
        assert r["tokens_per_second"] > 0 and r["stddev"] >= 0
    assert out["repetitions"] == 2 and out["read_bandwidth_gbs"] > 0.1
    # every matrix but the untied embedding: less than the file, more than half of it
    assert 0.5 * out["file_bytes"] < out["weight_bytes_per_token"] < out["file_bytes"]
    # A model this small (4.7 MB) is read from the caches, so its generation may beat the
    # memory bandwidth: the fraction can pass 1. What must hold is the formula, tg tokens/s
    # times bytes per token over the bandwidth. It is the mean of each run's own fraction,
    # not the ratio of the means, hence the margin, which still catches a wrong unit.
    tg = tests["tg8"]["tokens_per_second"]
    expected = tg * out["weight_bytes_per_token"] / (out["read_bandwidth_gbs"] * 1e9)
    assert 0.5 * expected < out["tg_roofline_fraction"] < 2 * expected


def test_bench_zero_length_skips_that_test(kiln_bin):
    """As llama-bench: -p 0 runs generation only, -n 0 prompt processing only (and then there
    is no roofline, which is generation's); both 0 is a usage error."""
    model = SHARED / "models" / "synthetic" / "llama-gqa.q4_0.gguf"
    tg_only = json.loads(run_kiln(kiln_bin, "bench", "--model-path", model, "-p", 0, "-n", 8,
                                  "-r", 1, "--json"))
    assert [r["test"] for r in tg_only["results"]] == ["tg8"]
    assert tg_only["results"][0]["tokens_per_second"] > 0
    assert tg_only["read_bandwidth_gbs"] > 0.1 and tg_only["tg_roofline_fraction"] > 0
    pp_only = json.loads(run_kiln(kiln_bin, "bench", "--model-path", model, "-p", 16, "-n", 0,
                                  "-r", 1, "--json"))
    assert [r["test"] for r in pp_only["results"]] == ["pp16"]
    assert pp_only["results"][0]["tokens_per_second"] > 0
    assert "tg_roofline_fraction" not in pp_only and "read_bandwidth_gbs" not in pp_only
    text = run_kiln(kiln_bin, "bench", "--model-path", model, "-p", 16, "-n", 0, "-r", 1).decode()
    assert "| pp16 |" in text and "| tg" not in text and "roofline" not in text
    neither = subprocess.run([str(kiln_bin), "bench", "--model-path", str(model), "-p", "0",
                              "-n", "0"], capture_output=True)
    assert neither.returncode == 2 and b"skips that test" in neither.stderr
