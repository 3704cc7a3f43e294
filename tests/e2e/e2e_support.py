"""Helpers the end-to-end tests import (conftest.py holds only fixtures): a real `kiln serve`
as a context the tests start and stop, and OpenAI's own schemas to check responses."""
import functools
import os
import pathlib
import signal
import subprocess
import sys
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from kiln_testing import KILN, SHARED, fetch_model, free_port  # noqa: E402,F401  (shared with tests/python)

MODEL = "smollm2-135m-instruct"


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


def with_nullable(node):
    """The spec still marks optional values OpenAPI 3.0's way (`nullable: true`), which JSON
    Schema ignores: turn each into an explicit alternative of null."""
    if isinstance(node, list):
        return [with_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: with_nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@functools.lru_cache(maxsize=1)
def openapi_spec():
    import yaml
    with open(SHARED / "openai" / "openapi.yaml") as f:
        return with_nullable(yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def validate(instance, schema_name):
    """Validates instance against a component schema of OpenAI's openapi.yaml."""
    import jsonschema
    spec = openapi_spec()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)
