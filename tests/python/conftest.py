"""Pytest fixtures for tests/python; the helpers tests import live in kiln_testing.py."""
import pytest

from kiln_testing import KILN, ROOT, SHARED


@pytest.fixture(scope="session")
def kiln_bin():
    if not KILN.exists():
        pytest.fail(f"{KILN} does not exist: run `make` first")
    return KILN


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.exists():
        pytest.fail(f"shared test data not found at {SHARED} (set KILN_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def build_tool():
    """Path of a helper built from tests/tools (e.g. dump_tensor)."""
    def path(name):
        p = ROOT / "build" / name
        if not p.exists():
            pytest.fail(f"{p} does not exist: run `make` first")
        return p
    return path
