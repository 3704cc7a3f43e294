"""bench/compare_servers waits for a quiet machine before each run: a server still computing
abandoned requests must not eat into the next server's measurement."""
import importlib.util
import os
import subprocess
import sys
import time
from importlib.machinery import SourceFileLoader

from kiln_testing import ROOT


def load_script(path):
    loader = SourceFileLoader(path.name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(path.name, loader))
    loader.exec_module(module)
    return module


compare_servers = load_script(ROOT / "bench" / "compare_servers")

BUSY = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"


def busy_children(seconds):
    """One busy process per core."""
    return [subprocess.Popen([sys.executable, "-c", BUSY.format(s=seconds)])
            for _ in range(os.cpu_count() or 1)]


def test_cpu_busy_sees_a_loaded_machine():
    children = busy_children(1.5)
    try:
        time.sleep(0.2)  # the children's start-up
        assert compare_servers.cpu_busy(0.5) > 0.6  # every core busy
    finally:
        for c in children:
            c.wait()


def test_wait_quiet_returns_once_the_load_ends():
    children = busy_children(1.5)
    try:
        time.sleep(0.2)
        start = time.monotonic()
        compare_servers.wait_quiet(limit_s=20)
        waited = time.monotonic() - start
    finally:
        for c in children:
            c.wait()
    assert 0.8 < waited < 20
