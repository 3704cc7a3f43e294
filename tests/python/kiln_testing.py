"""Helpers the Python tests import (conftest.py holds only fixtures): where the repository,
the shared test data and the kiln binary are, running kiln, and fetching real models."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("KILN_SHARED_DIR", ROOT.parent / "shared"))
KILN = pathlib.Path(os.environ.get("KILN_BIN", ROOT / "build" / "kiln"))


def free_port():
    """A TCP port on loopback that nothing listens on right now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_kiln(kiln_bin, *args, timeout=600):
    """Runs kiln and returns stdout; fails the test with stderr on a non-zero exit."""
    proc = subprocess.run([str(kiln_bin), *map(str, args)], capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"kiln {' '.join(map(str, args))} exited {proc.returncode}:\n"
                    f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def fetch_model(name):
    """Path of a real model from scripts/fetch-model (downloads it once into the cache)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch-model"), name],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"cannot fetch {name}: {out.stderr}")
    return out.stdout.strip()
