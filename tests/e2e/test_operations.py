"""Operating the server: API keys, CORS, the access log, /metrics, client disconnects,
a full queue, and a graceful SIGTERM."""
import re
import signal
import socket
import subprocess
import threading
import time

import httpx
import openai
import pytest

from e2e_support import KILN, SHARED, Server

MODEL = "smollm2"
LONG = {"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0,
        "ignore_eos": True}


def metric(server, name, labels=""):
    text = httpx.get(server.base_url + "/metrics").text
    m = re.search(rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def wait_for_metric(server, name, value, seconds):
    """Polls /metrics until name reads value or the time is up (the caller asserts)."""
    deadline = time.time() + seconds
    while time.time() < deadline and metric(server, name) != value:
        time.sleep(0.05)


def test_api_key(model_path, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    for args, env, key in [(["--api-key", "s3cret"], {}, "s3cret"),
                           ([], {"KILN_API_KEY": "from-env"}, "from-env"),
                           (["--api-key-file", key_file], {}, "from-file")]:
        srv = Server(model_path, *args, env=env)
        try:
            for bad in (None, "wrong"):
                headers = {"Authorization": f"Bearer {bad}"} if bad else {}
                r = httpx.get(srv.base_url + "/v1/models", headers=headers)
                assert r.status_code == 401
                assert r.json()["error"]["type"] == "authentication_error"
            assert httpx.get(srv.base_url + "/health").status_code == 200  # never behind the key
            good = openai.OpenAI(base_url=srv.base_url + "/v1", api_key=key, max_retries=0)
            assert good.models.list().data
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=srv.base_url + "/v1", api_key="nope",
                              max_retries=0).models.list()
        finally:
            assert srv.stop() == 0


def test_cors_and_access_log(model_path, tmp_path):
    log = tmp_path / "kiln.log"
    srv = Server(model_path, "--allowed-origin", "https://example.com", "--log-file", log,
                 "--served-model-name", 'we"ird\\name')
    try:
        r = httpx.options(srv.base_url + "/v1/chat/completions",
                          headers={"Origin": "https://example.com",
                                   "Access-Control-Request-Method": "POST"})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://example.com"
        assert "POST" in r.headers["access-control-allow-methods"]
        r = httpx.post(srv.base_url + "/v1/completions",
                       json={"prompt": "Hello", "max_tokens": 3, "ignore_eos": True})
        assert r.headers["access-control-allow-origin"] == "https://example.com"
        # label values are escaped in the Prometheus text
        assert 'model_name="we\\"ird\\\\name"' in httpx.get(srv.base_url + "/metrics").text
    finally:
        assert srv.stop() == 0
    text = log.read_text()
    assert re.search(r"POST /v1/completions 200 prompt=\d+ completion=3 [0-9.]+ms", text), text


def test_metrics(server, client):
    tokens_before = metric(server, "kiln:generation_tokens_total") or 0
    ok_before = metric(server, "kiln:http_requests_total", 'status="200"') or 0
    client.completions.create(model=MODEL, prompt="Hello", max_tokens=3,
                              extra_body={"ignore_eos": True})
    text = httpx.get(server.base_url + "/metrics").text
    for name in ["kiln:http_requests_total", "kiln:prompt_tokens_total",
                 "kiln:generation_tokens_total", "kiln:time_to_first_token_seconds_bucket",
                 "kiln:inter_token_latency_seconds_bucket", "kiln:e2e_request_latency_seconds_count",
                 "kiln:num_requests_running", "kiln:num_requests_waiting",
                 "kiln:kv_cache_usage_perc", "kiln:request_finished_total"]:
        assert name in text, name
    # at least: a generation canceled by an earlier test may still be counted meanwhile
    assert metric(server, "kiln:generation_tokens_total") - tokens_before >= 3
    assert metric(server, "kiln:http_requests_total", 'status="200"') - ok_before >= 1


def test_disconnect_mid_stream_frees_the_sequence(server):
    canceled_before = metric(server, "kiln:request_finished_total", 'finished_reason="canceled"')
    with httpx.stream("POST", server.base_url + "/v1/completions", json={**LONG, "stream": True},
                      timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in got)
        assert metric(server, "kiln:num_requests_running") == 1
    # closed after a few tokens of 400: the sequence must go within a step or so
    wait_for_metric(server, "kiln:num_requests_running", 0, 10)
    assert metric(server, "kiln:num_requests_running") == 0
    assert metric(server, "kiln:request_finished_total", 'finished_reason="canceled"') == canceled_before + 1


def test_disconnect_while_waiting_non_streaming(server):
    before = metric(server, "kiln:request_finished_total", 'finished_reason="canceled"')
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.base_url + "/v1/completions", json=LONG, timeout=0.5)
    wait_for_metric(server, "kiln:num_requests_running", 0, 10)
    assert metric(server, "kiln:num_requests_running") == 0
    assert metric(server, "kiln:request_finished_total", 'finished_reason="canceled"') == before + 1


def test_full_queue_answers_503(model_path):
    srv = Server(model_path, "--max-num-seqs", 1, "--max-waiting", 1)
    try:
        results = []

        def run():
            results.append(httpx.post(srv.base_url + "/v1/completions", json=LONG, timeout=120))

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.3)  # in order: one runs, one waits, the third finds the queue full
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 503], [r.text for r in results]
        busy = next(r for r in results if r.status_code == 503)
        assert busy.headers["retry-after"] and busy.json()["error"]["message"]
    finally:
        assert srv.stop() == 0


def test_sigterm_lets_requests_in_flight_finish(model_path):
    srv = Server(model_path)
    result = {}

    def run():
        result["r"] = httpx.post(srv.base_url + "/v1/completions",
                                 json={**LONG, "max_tokens": 60}, timeout=120)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    t.join()
    assert srv.stop() == 0
    assert result["r"].status_code == 200
    assert result["r"].json()["usage"]["completion_tokens"] == 60


def test_tokenize_detokenize_roundtrip(server):
    text = "Grüße, world! 123"
    ids = httpx.post(server.base_url + "/tokenize", json={"content": text, "add_special": False}).json()
    assert ids["count"] == len(ids["tokens"]) > 3 and ids["max_model_len"] == 4096
    back = httpx.post(server.base_url + "/detokenize", json={"tokens": ids["tokens"]}).json()
    assert back["content"] == text
    r = httpx.post(server.base_url + "/detokenize", json={"tokens": [-1]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens"


def test_unknown_fields_are_ignored(server):
    r = httpx.post(server.base_url + "/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                         "user": "someone", "metadata": {"a": 1}, "frobnicate": [1, 2]})
    assert r.status_code == 200, r.text


def test_chat_template_override_and_broken_template(model_path, tmp_path):
    """--chat-template replaces the model's; a broken one stops start-up with a clear error."""
    import jinja2
    template = SHARED / "chat-templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
    srv = Server(model_path, "--chat-template", template)
    try:
        messages = [{"role": "user", "content": "Hello there"}]
        got = httpx.post(srv.base_url + "/tokenize", json={"messages": messages}).json()["tokens"]
        rendered = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(
            template.read_text()).render(messages=messages, add_generation_prompt=True)
        want = httpx.post(srv.base_url + "/tokenize",
                          json={"content": rendered, "add_special": False}).json()["tokens"]
        assert got == want
    finally:
        assert srv.stop() == 0
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m.content }")
    proc = subprocess.run([str(KILN), "serve", "--model-path", model_path, "--port", "1",
                           "--chat-template", broken], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "broken.jinja" in proc.stderr and "line 1" in proc.stderr, proc.stderr


def test_read_timeout_closes_stalled_connections(model_path):
    srv = Server(model_path, "--timeout", 1)
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
        start = time.time()
        assert s.recv(4096) == b""  # closed by the server, not by our own timeout
        assert time.time() - start < 5
        s.close()
    finally:
        assert srv.stop() == 0


def test_disconnect_while_queued_leaves_the_queue(model_path):
    srv = Server(model_path, "--max-num-seqs", 1)
    try:
        running = threading.Thread(target=lambda: httpx.post(
            srv.base_url + "/v1/completions", json=LONG, timeout=120))
        running.start()
        time.sleep(0.3)
        with pytest.raises(httpx.TimeoutException):  # queued behind the first, then gone
            httpx.post(srv.base_url + "/v1/completions", json=LONG, timeout=0.5)
        wait_for_metric(srv, "kiln:num_requests_waiting", 0, 5)
        assert metric(srv, "kiln:num_requests_waiting") == 0
        assert metric(srv, "kiln:num_requests_running") == 1  # the first one is untouched
        running.join()
    finally:
        assert srv.stop() == 0
