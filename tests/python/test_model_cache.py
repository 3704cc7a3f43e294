"""The model cache: repo ids resolved through $KILN_CACHE_DIR and downloaded from a Hub
stand-in on loopback (fake_hub.py): a fresh download, a resumed one, a checksum mismatch
(refused, nothing half-written left), offline mode, GGUF quant selection, tokens, and the
server naming the model by its repo id."""
import os
import pathlib
import shutil
import subprocess

import httpx
import pytest

from fake_hub import FakeHub
from kiln_testing import SHARED, Server, make_tiny_bert, run_kiln

REPO = "kiln-test/tiny-bert"
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    make_tiny_bert(root / REPO)
    (root / REPO / "README.md").write_text("a tiny BERT\n")
    (root / REPO / "onnx").mkdir()
    (root / REPO / "onnx" / "model.onnx").write_bytes(b"not needed")
    gguf = root / "kiln-test" / "gguf-repo"
    gguf.mkdir(parents=True)
    for q in ("q8_0", "q4_0"):
        shutil.copy(SHARED / "models" / "synthetic" / f"llama-gqa.{q}.gguf",
                    gguf / f"llama-gqa-{q.upper()}.gguf")
    return root


@pytest.fixture
def hub(hub_root):
    h = FakeHub(hub_root)
    yield h
    h.close()


@pytest.fixture
def env(hub, tmp_path):
    e = dict(os.environ, KILN_CACHE_DIR=str(tmp_path / "cache"), HF_ENDPOINT=hub.url)
    e.pop("HF_TOKEN", None)
    e.pop("KILN_OFFLINE", None)
    return e


def kiln(kiln_bin, env, *args):
    return subprocess.run([str(kiln_bin), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_fresh_download_then_cached(kiln_bin, hub, hub_root, env):
    p = kiln(kiln_bin, env, "pull", REPO)
    assert p.returncode == 0, p.stderr
    path = pathlib.Path(p.stdout.strip())
    assert path == pathlib.Path(env["KILN_CACHE_DIR"]) / REPO
    for f in ("config.json", "vocab.txt", SHARD1, SHARD2, "model.safetensors.index.json",
              "1_Pooling/config.json", "modules.json"):
        assert (path / f).read_bytes() == (hub_root / REPO / f).read_bytes(), f
    assert not (path / "onnx").exists() and not (path / "README.md").exists()
    assert not (path / ".incomplete").exists()
    # the cached model is the same model
    got = kiln(kiln_bin, env, "embed", "--model-path", REPO, "Text to embed")
    want = run_kiln(kiln_bin, "embed", "--model-path", hub_root / REPO, "Text to embed").decode()
    assert got.returncode == 0 and got.stdout == want
    n = len(hub.requests)
    assert kiln(kiln_bin, env, "pull", REPO).returncode == 0
    assert len(hub.requests) == n  # served from the cache, no network


def test_dropped_connection_is_resumed(kiln_bin, hub, env):
    hub.drop_after[SHARD1] = 100_000
    p = kiln(kiln_bin, env, "pull", REPO)
    assert p.returncode == 0, p.stderr
    shard_requests = [r for r in hub.file_requests() if r[0].endswith(SHARD1)]
    assert [r[1] for r in shard_requests] == [None, "bytes=100000-"]
    assert f"downloading {SHARD1} failed" in p.stderr and "attempt 1 of 4" in p.stderr


def test_server_errors_are_retried_and_the_partial_file_kept(kiln_bin, hub, env):
    hub.drop_after[SHARD1] = 50_000
    hub.fail_once[SHARD2] = 503
    p = kiln(kiln_bin, env, "pull", REPO)
    assert p.returncode == 0, p.stderr
    assert "HTTP 503" in p.stderr and "attempt 1 of 4" in p.stderr
    ranges = [r[1] for r in hub.file_requests() if r[0].endswith(SHARD1)]
    assert ranges == [None, "bytes=50000-"]


def test_checksum_mismatch_is_refused_and_nothing_is_left(kiln_bin, hub, env):
    hub.corrupt.add(SHARD1)
    p = kiln(kiln_bin, env, "pull", REPO)
    assert p.returncode != 0
    assert f"{SHARD1} has sha256" in p.stderr and "download discarded" in p.stderr
    repo_dir = pathlib.Path(env["KILN_CACHE_DIR"]) / REPO
    assert not (repo_dir / SHARD1).exists()
    assert not list(repo_dir.rglob("*.part")) and not (repo_dir / ".kiln-complete").exists()
    assert not (repo_dir / ".incomplete").exists()
    offline = dict(env, KILN_OFFLINE="1")
    assert kiln(kiln_bin, offline, "embed", "--model-path", REPO, "x").returncode != 0
    hub.corrupt.clear()
    assert kiln(kiln_bin, env, "pull", REPO).returncode == 0


def test_offline_never_touches_the_network(kiln_bin, hub, env):
    offline = dict(env, KILN_OFFLINE="1")
    p = kiln(kiln_bin, offline, "embed", "--model-path", REPO, "x")
    assert p.returncode != 0 and "not in the model cache" in p.stderr and "KILN_OFFLINE" in p.stderr
    assert hub.requests == []
    assert kiln(kiln_bin, env, "pull", REPO).returncode == 0
    n = len(hub.requests)
    p = kiln(kiln_bin, offline, "embed", "--model-path", REPO, "x")
    assert p.returncode == 0, p.stderr
    assert len(hub.requests) == n


def test_gguf_repo_needs_a_quant_when_it_has_several(kiln_bin, hub, env):
    p = kiln(kiln_bin, env, "pull", "kiln-test/gguf-repo")
    assert p.returncode != 0
    assert "llama-gqa-Q8_0.gguf" in p.stderr and "llama-gqa-Q4_0.gguf" in p.stderr
    p = kiln(kiln_bin, env, "pull", "kiln-test/gguf-repo:q8_0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("kiln-test/gguf-repo/llama-gqa-Q8_0.gguf")
    downloaded = [r[0] for r in hub.file_requests()]
    assert len(downloaded) == 1 and downloaded[0].endswith("llama-gqa-Q8_0.gguf")
    offline = dict(env, KILN_OFFLINE="1")
    g = kiln(kiln_bin, offline, "generate", "--model-path", "kiln-test/gguf-repo:Q8_0", "-p",
             "Hello", "-n", "4")
    assert g.returncode == 0, g.stderr
    # offline answers as online would: without a tag the repo is still ambiguous
    assert kiln(kiln_bin, offline, "pull", "kiln-test/gguf-repo").returncode != 0
    assert kiln(kiln_bin, offline, "pull", "kiln-test/gguf-repo:LLAMA-GQA-Q8_0.GGUF").returncode == 0


def test_token_is_sent_and_errors_name_the_cause(kiln_bin, hub, env):
    hub.require_token = "secret"
    p = kiln(kiln_bin, env, "pull", REPO)
    assert p.returncode != 0 and "HTTP 401" in p.stderr and "HF_TOKEN" in p.stderr
    p = kiln(kiln_bin, dict(env, HF_TOKEN="secret"), "pull", REPO)
    assert p.returncode == 0, p.stderr
    assert all(r[2] == "Bearer secret" for r in hub.requests[1:])
    p = kiln(kiln_bin, dict(env, HF_TOKEN="secret"), "pull", "kiln-test/no-such-model")
    assert p.returncode != 0 and "HTTP 404" in p.stderr
    p = kiln(kiln_bin, env, "pull", "not a repo")
    assert p.returncode != 0 and "not a Hugging Face repo id" in p.stderr


def test_server_names_the_model_by_its_repo_id(kiln_bin, hub, env):
    srv = Server(REPO, env=env)
    try:
        models = httpx.get(srv.base_url + "/v1/models").json()
        assert models["data"][0]["id"] == REPO
        r = httpx.post(srv.base_url + "/v1/embeddings", json={"model": REPO, "input": "x"})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 64
    finally:
        assert srv.stop() == 0, srv.log_text()
