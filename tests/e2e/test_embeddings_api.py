"""/v1/embeddings end to end: `kiln serve` on all-MiniLM-L6-v2 (a Hugging Face directory)
driven by the official openai client: single and batch inputs, token-id inputs, base64,
usage, OpenAI's response schema, bad input answered with 4xx, and a decoder model serving
embeddings next to its completions."""
import base64
import json

import httpx
import numpy as np
import openai
import pytest

from e2e_support import ROOT, Server, cosine, fetch_model, validate

REF = json.loads((ROOT / "tests" / "python" / "data" / "embeddings" /
                  "all-MiniLM-L6-v2.json").read_text())


@pytest.fixture(scope="module")
def emb_server():
    srv = Server(fetch_model("all-minilm-l6-v2"))
    yield srv
    assert srv.stop() == 0, srv.log_text()


@pytest.fixture(scope="module")
def emb_client(emb_server):
    return openai.OpenAI(base_url=emb_server.base_url + "/v1", api_key="unused", max_retries=0)


def test_batch_of_texts_matches_sentence_transformers(emb_client):
    r = emb_client.embeddings.create(model="all-MiniLM-L6-v2", input=REF["texts"],
                                     encoding_format="float")
    assert [d.index for d in r.data] == list(range(len(REF["texts"])))
    for d, want in zip(r.data, REF["vectors"]):
        assert len(d.embedding) == 384 and cosine(d.embedding, want) >= 0.999
    n_tokens = sum(len(t) for t in REF["tokens"])
    assert r.usage.prompt_tokens == n_tokens and r.usage.total_tokens == n_tokens
    assert r.model == "all-MiniLM-L6-v2"
    validate(r.model_dump(mode="json", exclude_unset=True), "CreateEmbeddingResponse")


def test_single_string_and_base64(emb_server, emb_client):
    r = emb_client.embeddings.create(model="all-MiniLM-L6-v2", input="Text to embed")
    assert len(r.data) == 1 and cosine(r.data[0].embedding, REF["vectors"][0]) >= 0.999
    raw = httpx.post(emb_server.base_url + "/v1/embeddings",
                     json={"input": ["Text to embed", "Another text"],
                           "encoding_format": "base64"}).json()
    # openapi.yaml types the embedding as an array only; OpenAI sends base64 as a string
    assert raw["object"] == "list" and raw["usage"]["prompt_tokens"] == 10
    assert [d["index"] for d in raw["data"]] == [0, 1]
    for d, want in zip(raw["data"], REF["vectors"]):
        vec = np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
        assert vec.shape == (384,) and cosine(vec, want) >= 0.999


def test_token_id_inputs(emb_client):
    r = emb_client.embeddings.create(model="all-MiniLM-L6-v2", input=REF["tokens"][2],
                                     encoding_format="float")
    assert cosine(r.data[0].embedding, REF["vectors"][2]) >= 0.999
    r = emb_client.embeddings.create(model="all-MiniLM-L6-v2", input=REF["tokens"][:2],
                                     encoding_format="float")
    assert [round(cosine(d.embedding, w), 3) for d, w in zip(r.data, REF["vectors"])] == [1, 1]


def test_bad_requests_get_4xx_and_the_server_keeps_serving(emb_server, emb_client):
    url = emb_server.base_url + "/v1/embeddings"
    cases = [
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({}, "input"),
        ({"input": [1.5]}, "input"),
        ({"input": [[999999]]}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 12}, "dimensions"),
        ({"input": "word " * 600}, "input"),
    ]
    for body, param in cases:
        r = httpx.post(url, json=body)
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert err["param"].startswith(param) and err["type"] == "invalid_request_error" and err["message"]
    r = httpx.post(url, json={"input": "x", "model": "other"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        emb_client.completions.create(model="all-MiniLM-L6-v2", prompt="hi")
    ok = emb_client.embeddings.create(model="all-MiniLM-L6-v2", input="still here")
    assert len(ok.data[0].embedding) == 384


def test_truncation_when_asked(emb_server):
    url = emb_server.base_url + "/v1/embeddings"

    def embed(body):
        r = httpx.post(url, json=dict(body, encoding_format="float"))
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens"], np.array(r.json()["data"][0]["embedding"])

    # TEI's truncate keeps the first tokens, and a text's [SEP] stays last
    word = httpx.post(emb_server.base_url + "/tokenize",
                      json={"content": "word", "add_special": False}).json()["tokens"][0]
    n, cut = embed({"input": "word " * 600, "truncate": True})
    assert n == 512
    assert np.allclose(cut, embed({"input": [101] + [word] * 510 + [102]})[1], atol=1e-6)
    n, cut = embed({"input": [101] + [word] * 600 + [102], "truncate": True})  # ids as given
    assert n == 512
    assert np.allclose(cut, embed({"input": [101] + [word] * 511})[1], atol=1e-6)
    # vLLM's truncate_prompt_tokens keeps the last ones
    n, _ = embed({"input": "word " * 600, "truncate_prompt_tokens": 20})
    assert n == 20
    ids = REF["tokens"][6]  # 50-odd tokens: [CLS] ... [SEP]
    _, last = embed({"input": ids, "truncate_prompt_tokens": 8})
    assert np.allclose(last, embed({"input": ids[-8:]})[1], atol=1e-6)
    assert not np.allclose(last, embed({"input": ids[:8]})[1], atol=1e-3)


def test_models_and_metrics(emb_server):
    models = httpx.get(emb_server.base_url + "/v1/models").json()
    validate(models, "ListModelsResponse")
    assert models["data"][0]["max_model_len"] == 512
    def inputs_total():
        metrics = httpx.get(emb_server.base_url + "/metrics").text
        line = next(ln for ln in metrics.splitlines()
                    if ln.startswith("kiln:embedding_inputs_total"))
        return float(line.split()[-1])

    before = inputs_total()
    httpx.post(emb_server.base_url + "/v1/embeddings", json={"input": ["a", "b", "c"]})
    assert inputs_total() - before == 3


def test_decoder_serves_embeddings_and_completions(client):
    """The session's SmolLM2 server: embeddings run between generation steps."""
    r = client.embeddings.create(model="smollm2", input=["Hello there", "General Kenobi"],
                                 encoding_format="float")
    assert len(r.data) == 2 and len(r.data[0].embedding) == 576
    assert abs(np.linalg.norm(r.data[0].embedding) - 1) < 1e-4
    validate(r.model_dump(mode="json", exclude_unset=True), "CreateEmbeddingResponse")
    c = client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=4)
    assert c.choices[0].text
