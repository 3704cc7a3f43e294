"""Helpers the end-to-end tests import (conftest.py holds only fixtures): OpenAI's own schemas
to check responses, and (from tests/python/kiln_testing.py) a real `kiln serve` the tests
start and stop."""
import functools
import pathlib
import sys


ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from kiln_testing import KILN, SHARED, Server, cosine, fetch_model  # noqa: E402,F401  (shared with tests/python)

MODEL = "smollm2-135m-instruct"


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
