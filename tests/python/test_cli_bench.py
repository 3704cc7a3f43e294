"""`kiln bench --json` reports pp and tg speeds in llama-bench's shape, and the roofline
fraction from its own bandwidth measurement."""
import json

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
    assert 0 < out["tg_roofline_fraction"] < 1.5
