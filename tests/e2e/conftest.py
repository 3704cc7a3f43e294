"""Fixtures for the end-to-end tests: one `kiln serve` on SmolLM2-135M-Instruct for the
session, and the official openai client pointed at it."""
import openai
import pytest

from e2e_support import MODEL, Server, fetch_model


@pytest.fixture(scope="session")
def model_path():
    return fetch_model(MODEL)


@pytest.fixture(scope="session")
def server(model_path):
    srv = Server(model_path, "--max-num-seqs", 4, "--served-model-name", "smollm2")
    yield srv
    assert srv.stop() == 0, srv.log_text()


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)
