"""`canvas serve`: the OpenAI-compatible HTTP server, driven by the official `openai` client.

A tiny Llama (random weights, a real tokenizer with a chat template) is saved by the test and
loaded through the worker's own InferenceSession. Most tests share one real uvicorn server on a
thread of this process; the lifecycle test starts a real detached `serve` run with `canvas serve`
and stops it with `canvas stop`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest

from canvas_tui.cli import main as canvas
from engine.locations import runs_dir
from engine.serve import protocol
from engine.serve.http import ServeApp, serve
from engine.serve.launch import bind_socket
from tests.finetune_fixtures import tiny_base, tiny_tokenizer
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-0123456789abcdef"
MODEL_ID = "tiny"


@pytest.fixture(autouse=True)
def no_server_left_behind():
    """However a test ends, no serve engine it started keeps running (and holding a port)."""
    yield
    from engine.runs import kill_run, list_runs, run_status, wait_for_end

    for run in list_runs():
        if run_status(run, tail=0).is_live:
            kill_run(run)
            wait_for_end(run, 30)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-model")
    return tiny_base(root / "tiny", tiny_tokenizer(root / "tok"))


@pytest.fixture(scope="module")
def session(model_dir: Path):
    from engine.serve.session import InferenceSession

    s = InferenceSession()
    s.load(protocol.Load(id="load", model=str(model_dir), device="cpu"))
    yield s
    s.close()


class SlowSession:
    """The real session, paced: each token waits ``delay`` seconds (so a disconnect lands mid-stream)."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def generate(self, request, on_delta, cancelled=None):
        def slow(delta):
            time.sleep(self.delay)
            on_delta(delta)

        return self.inner.generate(request, slow, cancelled)


class Server:
    """A real uvicorn serving a ServeApp on a thread of this process."""

    def __init__(self, session, *, api_key: str | None = KEY, adapter_switch: bool = False) -> None:
        self.events: list[dict] = []
        self.app = ServeApp(
            session, model_id=MODEL_ID, api_key=api_key, emit=self._emit, adapter_switch=adapter_switch
        )
        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._stop = threading.Event()
        listening = threading.Event()
        self.thread = threading.Thread(
            target=serve,
            args=(self.app, sock),
            kwargs={"should_stop": self._stop.is_set, "on_listening": listening.set},
            daemon=True,
        )
        self.thread.start()
        wait_until(listening.is_set, 30, "the server to listen")

    def _emit(self, kind: str, **fields) -> None:
        self.events.append({"type": kind, **fields})

    def requests(self) -> list[dict]:
        return [e for e in self.events if e["type"] == "request"]

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=60)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(30)
        self.app.close()


@pytest.fixture(scope="module")
def server(session):
    srv = Server(session)
    yield srv
    srv.close()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], text: str) -> None:
        self.status_code, self.headers, self.text = status, headers, text

    def json(self):
        return json.loads(self.text)


def call(url: str, method: str, path: str, body: dict | None = None, key: str | None = KEY) -> Reply:
    """A plain HTTP request (stdlib), for what the openai client hides: headers, raw SSE, status."""
    conn = http.client.HTTPConnection(url.split("//")[1].split("/")[0], timeout=60)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(
            method, "/v1" + path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
        )
    finally:
        conn.close()


def direct(session, **fields) -> protocol.Done:
    """The same generation without HTTP."""
    return session.generate(protocol.Generate(id="direct", **fields), lambda d: None)


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something."}]


def test_streamed_chat_equals_the_non_streamed_greedy_one_with_right_usage(server, session):
    client = server.client()
    whole = client.chat.completions.create(model=MODEL_ID, messages=CHAT, max_tokens=12, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL_ID,
            messages=CHAT,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = whole.choices[0].message.content
    expected = direct(
        session,
        messages=[protocol.Message(m["role"], m["content"]) for m in CHAT],
        max_new_tokens=12,
        temperature=0.0,
    )
    assert text == expected.text and text  # the model's own greedy text, not an empty answer
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected.prompt_tokens, expected.new_tokens)
    assert whole.usage.model_dump() == {
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": expected.new_tokens,
        "total_tokens": expected.prompt_tokens + expected.new_tokens,
        **{k: v for k, v in whole.usage.model_dump().items() if k.endswith("_details")},
    }
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_a_non_streamed_completion_is_the_plain_continuation(server, session):
    out = server.client().completions.create(model=MODEL_ID, prompt="The module", max_tokens=7, temperature=0)
    expected = direct(session, prompt="The module", max_new_tokens=7, temperature=0.0)
    assert out.object == "text_completion" and out.model == MODEL_ID
    assert out.choices[0].text == expected.text and expected.new_tokens > 0
    assert out.usage.prompt_tokens == expected.prompt_tokens
    assert out.usage.completion_tokens == expected.new_tokens <= 7


def test_a_streamed_completion_is_server_sent_events_ending_with_done(server):
    body = {"model": MODEL_ID, "prompt": "The", "max_tokens": 5, "temperature": 0, "stream": True}
    response = call(server.url, "POST", "/completions", body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\ndata: [DONE]\n\n")
    blocks = response.text.split("\n\n")[:-1]
    assert all(block.startswith("data: ") for block in blocks)
    chunks = [json.loads(block[6:]) for block in blocks[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["object"] == "text_completion" and c["model"] == MODEL_ID for c in chunks)


def test_models_lists_the_served_model(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL_ID]
    assert server.client().models.retrieve(MODEL_ID).id == MODEL_ID


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """A LoRA adapter on ``model_dir`` with non-zero weights (so it changes the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    lora = LoraConfig(
        r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora)
    out = tmp_path_factory.mktemp("serve-adapter") / "adapter"
    peft_model.save_pretrained(str(out))
    return out


@pytest.mark.slow
def test_a_model_with_an_adapter_is_also_served_as_its_base(session, model_dir, adapter_dir):
    """``ID:base`` answers with the adapter switched off, on the same loaded weights: it equals the
    base model alone, and ``ID`` (adapter on) does not."""
    from engine.serve.session import InferenceSession

    tuned = InferenceSession()
    ready = tuned.load(protocol.Load(id="l", model=str(model_dir), adapter=str(adapter_dir), device="cpu"))
    assert ready.adapter
    srv = Server(tuned, adapter_switch=True)
    try:
        client = srv.client()
        assert [m.id for m in client.models.list().data] == [MODEL_ID, MODEL_ID + ":base"]
        assert client.models.retrieve(MODEL_ID + ":base").id == MODEL_ID + ":base"
        greedy = dict(messages=CHAT, max_tokens=12, temperature=0)
        off = client.chat.completions.create(model=MODEL_ID + ":base", **greedy)
        on = client.chat.completions.create(model=MODEL_ID, **greedy)
        streamed_off = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=MODEL_ID + ":base", stream=True, **greedy)
            if c.choices
        )
        base = direct(
            session,  # the base folder alone, loaded without the adapter
            messages=[protocol.Message(m["role"], m["content"]) for m in CHAT],
            max_new_tokens=12,
            temperature=0.0,
        )
        assert off.model == MODEL_ID + ":base" and on.model == MODEL_ID
        assert off.choices[0].message.content == streamed_off == base.text and base.text
        assert on.choices[0].message.content != base.text  # the adapter is on for the plain id
        completion = client.completions.create(
            model=MODEL_ID + ":base", prompt="The module", max_tokens=7, temperature=0
        )
        assert (
            completion.choices[0].text
            == direct(session, prompt="The module", max_new_tokens=7, temperature=0.0).text
        )
        assert [r["model"] for r in srv.requests() if r["endpoint"] != "/v1/models"] == [
            MODEL_ID + ":base",
            MODEL_ID,
            MODEL_ID + ":base",
            MODEL_ID + ":base",
        ]
    finally:
        srv.close()
        tuned.close()


def test_a_model_without_an_adapter_has_no_base_twin(server):
    with pytest.raises(openai.NotFoundError):
        server.client().completions.create(model=MODEL_ID + ":base", prompt="x", max_tokens=2)


def test_a_wrong_or_missing_api_key_gets_401(server):
    with pytest.raises(openai.AuthenticationError) as exc:
        server.client("wrong-key").chat.completions.create(model=MODEL_ID, messages=CHAT, max_tokens=2)
    assert exc.value.status_code == 401 and exc.value.code == "invalid_api_key"
    response = call(server.url, "GET", "/models", key=None)  # no key at all
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert server.requests()[-1]["status"] == 401


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"n": 2}, 400, "n"),
        ({"temperature": -1}, 400, "temperature"),
        ({"max_tokens": 0}, 400, "max_tokens"),
        ({"stop": 3}, 400, "stop"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
        ({"logprobs": True}, 400, "logprobs"),
        ({"frobnicate": 1}, 400, "frobnicate"),
        ({"model": "gpt-4"}, 404, "model"),
    ],
)
def test_bad_fields_get_openai_errors_naming_them(server, fields, status, param):
    body = {"model": MODEL_ID, "messages": CHAT, "max_tokens": 2, **fields}
    response = call(server.url, "POST", "/chat/completions", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_the_official_client_sees_errors_as_its_own_exceptions(server):
    client = server.client()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL_ID, messages=CHAT, max_tokens=2, n=2)
    assert bad.value.param == "n"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as long_prompt:  # the session's own refusal, as a 400
        client.completions.create(model=MODEL_ID, prompt="word " * 2000, max_tokens=2)
    assert long_prompt.value.param == "prompt"


def test_each_request_is_recorded_as_an_event(server):
    before = len(server.requests())
    server.client().completions.create(model=MODEL_ID, prompt="A", max_tokens=3, temperature=0)
    record = server.requests()[before]
    assert record["endpoint"] == "/v1/completions" and record["status"] == 200
    assert record["stream"] is False and record["model"] == MODEL_ID
    assert record["prompt_tokens"] > 0 and 0 < record["completion_tokens"] <= 3
    assert record["duration_s"] > 0 and record["finish_reason"] in ("stop", "length")


def test_tokens_arrive_as_they_are_made_not_at_the_end(session):
    srv = Server(SlowSession(session, 0.1), api_key=None)
    try:
        stream = srv.client().completions.create(
            model=MODEL_ID, prompt="The", max_tokens=6, temperature=0, stream=True
        )
        arrivals = [(time.monotonic(), c.choices[0].text) for c in stream if c.choices[0].text]
    finally:
        srv.close()
    assert len(arrivals) >= 3  # several chunks, not one at the end
    assert arrivals[-1][0] - arrivals[0][0] > 0.2  # spread over the generation (0.1 s a token)


def test_a_client_that_disconnects_cancels_the_generation(session):
    srv = Server(SlowSession(session, 0.05), api_key=None)
    try:
        body = {"model": MODEL_ID, "prompt": "The", "max_tokens": 400, "temperature": 0.8, "stream": True}
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request(
            "POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        assert response.status == 200
        got = 0
        while got < 3:  # a few chunks, then leave: the connection closes mid-stream
            got += response.fp.readline().startswith(b"data: ")
        conn.close()
        response.close()
        record = wait_until(lambda: next(iter(srv.requests()), None), 30, "the request event")
        assert record["status"] == 499 and record["finish_reason"] == "cancelled"
        assert record["completion_tokens"] < 100  # stopped within a few tokens, not after 400 (20 s)
        # The generation thread is free again: the next request is answered at once.
        started = time.monotonic()
        out = srv.client().completions.create(model=MODEL_ID, prompt="A", max_tokens=2, temperature=0)
        assert out.choices[0].text is not None and time.monotonic() - started < 10
    finally:
        srv.close()


def test_a_client_that_leaves_a_non_streamed_request_cancels_it_too(session):
    srv = Server(SlowSession(session, 0.05), api_key=None)
    try:
        body = json.dumps({"model": MODEL_ID, "prompt": "The", "max_tokens": 400, "temperature": 0.8})
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
            raw.sendall(
                f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
            time.sleep(0.5)  # a few tokens in, the client gives up
        record = wait_until(lambda: next(iter(srv.requests()), None), 30, "the request event")
        assert record["status"] == 499 and record["finish_reason"] == "cancelled"
        assert record["stream"] is False and record["completion_tokens"] < 100
    finally:
        srv.close()


# ------------------------------------------------------------------------ the `serve` run (CLI)
def _runs() -> list[str]:
    root = runs_dir()
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_non_local_bind_without_a_key_is_refused_before_a_run_exists(model_dir, capsys):
    assert canvas(["serve", str(model_dir), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without an API key" in err and "--api-key" in err
    assert _runs() == []


def test_a_port_in_use_is_refused_before_a_run_exists(model_dir, capsys):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        assert canvas(["serve", str(model_dir), "--port", str(port)]) == 2
    finally:
        busy.close()
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
    assert _runs() == []


def test_an_unknown_model_is_refused_before_a_run_exists(tmp_path, capsys):
    assert canvas(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "missing" in capsys.readouterr().err
    assert _runs() == []


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("gpu-box.example", False),
    ],
)
def test_only_loopback_counts_as_local(host, local):
    from engine.serve.launch import is_local_host

    assert is_local_host(host) is local


def test_a_key_opens_a_non_local_bind_with_warnings_and_is_not_stored(model_dir):
    from engine.config.errors import ConfigError
    from engine.serve.launch import ServeConfig, preflight, url_for

    cfg = ServeConfig(model=str(model_dir), host="0.0.0.0", port=0)
    with pytest.raises(ConfigError) as refused:
        preflight(cfg, None)
    assert refused.value.field == "api_key"
    checked = preflight(cfg, "short")
    assert checked.config.api_key is True and "short" not in json.dumps(checked.config.to_dict())
    assert any("5 characters" in w for w in checked.warnings)
    assert any("unencrypted" in w for w in checked.warnings)
    assert not preflight(ServeConfig(model=str(model_dir), port=0), None).warnings  # local: nothing to say
    assert url_for("::1", 8000) == "http://[::1]:8000/v1"
    assert checked.config.served_name == "tiny"  # a folder is served by its last path part


def _canvas(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui.cli", *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_a_serve_run_is_listed_answers_logs_requests_and_stops_freeing_its_port(model_dir):
    from engine.runs import resolve_run, run_status
    from engine.runs.events import Request
    from engine.runs.reader import EventReader

    started = _canvas("serve", str(model_dir), "--port", "0", "--api-key", KEY, "--name", "srv", "--detach")
    assert started.returncode == 0, started.stderr
    run = resolve_run(started.stdout.split()[0])
    meta = run.read_meta()
    assert meta.kind == "serve" and meta.config["api_key"] is True
    assert KEY not in run.run_json.read_text()  # the key is never written to the run directory
    url = wait_until(lambda: run.read_meta().url or not run_status(run).is_live, 180, "the address")
    assert isinstance(url, str) and url.startswith("http://127.0.0.1:"), run.log_path.read_text()
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=60)
    out = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=4, temperature=0)
    assert out.usage.completion_tokens > 0
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="bad", max_retries=0).models.list()

    shown = _canvas("status", run.id)
    assert f"address     {url}" in shown.stdout and "running" in shown.stdout
    listed = _canvas("runs", "--json")
    row = next(r for r in json.loads(listed.stdout) if r["id"] == run.id)
    assert (row["kind"], row["status"], row["name"]) == ("serve", "running", "srv")

    stopped = _canvas("stop", run.id, "--wait", "--timeout", "60")
    assert stopped.returncode == 0, stopped.stderr
    assert run.read_meta().status == "stopped"
    with socket.socket() as probe:  # the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    requests = [e for e in EventReader(run.events_path).read_events() if isinstance(e, Request)]
    assert [(r.endpoint, r.status) for r in requests] == [("/v1/chat/completions", 200), ("/v1/models", 401)]
    assert requests[0].completion_tokens == out.usage.completion_tokens
    logs = _canvas("logs", run.id)
    assert "request: POST /v1/chat/completions 200" in logs.stdout


@pytest.mark.slow
def test_in_the_foreground_ctrl_c_stops_the_serve_run(model_dir, adapter_dir):
    """Served with an adapter, the run lists the model and its ``:base`` twin; Ctrl-C stops it."""
    import signal

    from engine.runs import list_runs

    argv = ["serve", str(model_dir), "--adapter", str(adapter_dir), "--port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "canvas_tui.cli", *argv],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        while not any(line.startswith("serving at http://127.0.0.1:") for line in lines):
            line = proc.stdout.readline()
            assert line, f"canvas serve ended early: {lines} {proc.stderr.read()}"
            lines.append(line)
        (run,) = list_runs()
        assert run.read_meta().kind == "serve" and run_id_printed(lines) == run.id
        client = openai.OpenAI(base_url=run.read_meta().url, api_key="none", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data] == ["tiny", "tiny:base"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"serve run {run.id} stopped" in out
    assert run.read_meta().status == "stopped"


def run_id_printed(lines: list[str]) -> str:
    return next(line.strip() for line in lines if line.strip() and not line.startswith("serving"))
