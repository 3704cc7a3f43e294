"""Shared pytest fixtures: where the kiln binary, the shared test data and the model cache are."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("KILN_SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def kiln_bin():
    path = pathlib.Path(os.environ.get("KILN_BIN", ROOT / "build" / "kiln"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `make` first")
    return path


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.exists():
        pytest.fail(f"shared test data not found at {SHARED} (set KILN_SHARED_DIR)")
    return SHARED


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


@pytest.fixture(scope="session")
def build_tool():
    """Path of a helper built from tests/tools (e.g. dump_tensor)."""
    def path(name):
        p = ROOT / "build" / name
        if not p.exists():
            pytest.fail(f"{p} does not exist: run `make` first")
        return p
    return path
