"""Bad requests get the right status and an OpenAI-shaped error naming the problem, and the
server keeps serving after every one of them."""
import socket

import httpx
import openai
import pytest

from e2e_support import validate

MODEL = "smollm2"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
GOOD_CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def post_raw(server, path, body: bytes, content_type="application/json"):
    return httpx.post(server.base_url + path, content=body,
                      headers={"Content-Type": content_type}, timeout=60)


def assert_error(r, status, param=None, fragment=None):
    assert r.status_code == status, r.text
    body = r.json()
    validate(body, "ErrorResponse")
    err = body["error"]
    assert err["message"] and err["type"]
    if param is not None:
        assert err["param"] == param, err
    if fragment is not None:
        assert fragment in err["message"], err
    return err


def still_serving(server):
    r = httpx.post(server.base_url + CHAT, json=GOOD_CHAT, timeout=60)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body, param, fragment", [
    (b"{not json", None, "invalid JSON"),
    (b"", None, "empty"),
    (b"[1, 2]", None, "JSON object"),
    (b'{"model": "smollm2"}', "messages", "required"),
    (b'{"messages": []}', "messages", "must not be empty"),
    (b'{"messages": "hello"}', "messages", "array"),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role", "one of"),
    (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content", None),
    (b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
     "messages[0].content", "not supported"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature", "number"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": 5}', "temperature", "between"),
    (b'{"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}', "top_p", None),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens", None),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}', "max_tokens", "integer"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 100}', "n", None),
    (b'{"messages": [{"role": "user", "content": "x"}], "stop": 7}', "stop", None),
    (b'{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}', "logit_bias", None),
    (b'{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"99999999": 1}}', "logit_bias", None),
    (b'{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}', "top_logprobs", "logprobs"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream", "boolean"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}',
     "stream_options", None),
    (b'{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}',
     "response_format", "not supported"),
    (b'{"messages": [{"role": "user", "content": "x"}], "presence_penalty": -3}', "presence_penalty", None),
])
def test_bad_chat_requests(server, body, param, fragment):
    assert_error(post_raw(server, CHAT, body), 400, param, fragment)
    still_serving(server)


@pytest.mark.parametrize("body, param", [
    (b'{"prompt": 12}', "prompt"),
    (b'{"prompt": [[1, 2], "x", 3.5]}', "prompt"),
    (b'{"prompt": [1, -5]}', "prompt"),
    (b'{"prompt": [1, 99999999]}', "prompt"),
    (b'{"prompt": "x", "logprobs": true}', "logprobs"),
    (b'{"prompt": "x", "logprobs": 50}', "logprobs"),
    (b'{}', "prompt"),
])
def test_bad_completion_requests(server, body, param):
    assert_error(post_raw(server, COMPLETIONS, body), 400, param)
    still_serving(server)


def test_invalid_utf8_is_refused(server):
    body = b'{"messages": [{"role": "user", "content": "bad \xff\xfe bytes"}]}'
    assert_error(post_raw(server, CHAT, body), 400)
    still_serving(server)


def test_unknown_model_is_404(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-5", messages=GOOD_CHAT["messages"])
    assert e.value.body["code"] == "model_not_found" and "gpt-5" in e.value.body["message"]
    still_serving(server)


def test_body_over_the_limit_is_413(server):
    big = b'{"prompt": "' + b"a" * (20 << 20) + b'"}'
    try:
        r = post_raw(server, COMPLETIONS, big)
        assert r.status_code == 413
        assert r.json()["error"]["message"]
    except httpx.HTTPError:
        pass  # the server may close the connection once it has answered; the next check matters
    still_serving(server)


def test_prompt_longer_than_the_context_is_400(server):
    long_text = "hello " * 5000  # ~5000 tokens against a 4096-token context
    r = httpx.post(server.base_url + COMPLETIONS, json={"prompt": long_text, "max_tokens": 4},
                   timeout=60)
    err = assert_error(r, 400, "prompt", "context")
    assert err["code"] == "context_length_exceeded"
    r = httpx.post(server.base_url + CHAT, json={"messages": [{"role": "user", "content": long_text}]},
                   timeout=60)
    assert_error(r, 400, "messages", "context")
    # asking for more tokens than fit is refused too, never silently cut
    r = httpx.post(server.base_url + COMPLETIONS, json={"prompt": "hi", "max_tokens": 100000},
                   timeout=60)
    assert_error(r, 400, "prompt", "max_tokens")
    still_serving(server)


def test_wrong_method_and_unknown_path(server):
    assert_error(httpx.get(server.base_url + CHAT), 405)
    assert_error(httpx.get(server.base_url + "/v1/nothing"), 404)
    still_serving(server)


def test_oversized_headers_and_uri(server):
    r = httpx.get(server.base_url + "/health", headers={"X-Big": "a" * 70000})
    assert r.status_code == 431
    # (httpx refuses such a URL itself, so this one goes over a raw socket)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"GET /v1/models?" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status_line = s.recv(4096).split(b"\r\n")[0]
    assert status_line.split()[1] == b"414", status_line
    still_serving(server)


def test_stalled_client_does_not_hold_the_server(server):
    """A client that sends half a request and stops is cut off; others are served meanwhile."""
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
    still_serving(server)
    s.close()
