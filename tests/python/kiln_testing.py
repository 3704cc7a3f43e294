"""Helpers the Python tests import (conftest.py holds only fixtures): where the repository,
the shared test data and the kiln binary are, running kiln, a `kiln serve` to start and
stop, and fetching real models."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("KILN_SHARED_DIR", ROOT.parent / "shared"))
KILN = pathlib.Path(os.environ.get("KILN_BIN", ROOT / "build" / "kiln"))


def free_port():
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cosine(a, b):
    """Cosine similarity of two vectors."""
    import numpy as np
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def make_tiny_bert(out):
    """Writes tests/tools/make_tiny_bert.py's tiny BERT directory to out; returns out."""
    subprocess.run([sys.executable, str(ROOT / "tests" / "tools" / "make_tiny_bert.py"), str(out)],
                   check=True, capture_output=True)
    return out


def run_kiln(kiln_bin, *args, timeout=600):
    """Runs kiln and returns stdout; fails the test with stderr on a non-zero exit."""
    proc = subprocess.run([str(kiln_bin), *map(str, args)], capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"kiln {' '.join(map(str, args))} exited {proc.returncode}:\n"
                    f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout


class Server:
    """A running `kiln serve`; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, model_path, *args, env=None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        kiln = str(KILN)
        self.log_path = pathlib.Path(f"/tmp/kiln-e2e-{self.port}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [kiln, "serve", "--model-path", model_path, "--port", str(self.port), "--threads",
             "2", *map(str, args)], stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kiln serve exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"kiln serve did not become healthy:\n{self.log_text()}")

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()


def fetch_model(name):
    """Path of a real model from scripts/fetch-model (downloads it once into the cache)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch-model"), name],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"cannot fetch {name}: {out.stderr}")
    return out.stdout.strip()
