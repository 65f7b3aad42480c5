"""The OpenAI-compatible HTTP front of ``canvas serve``: a Starlette app on uvicorn, and the engine
process of a ``serve`` run (``python -m engine.serve.http --run-dir DIR``).

Endpoints (the subset of OpenAI's API a chat UI and the official client use)::

    GET  /v1/models                 the one model this server holds (and its ``:base`` twin)
    GET  /v1/models/{id}
    POST /v1/completions            prompt -> text            (stream: true -> server-sent events)
    POST /v1/chat/completions       messages -> a reply       (stream: true -> server-sent events)

A model loaded with a LoRA adapter (a fine-tune run, or a folder with ``--adapter``) is listed
twice: ``ID`` answers with the adapter on, ``ID:base`` (:data:`BASE_SUFFIX`) with it switched off,
on the same loaded weights: a client compares the fine-tune with its base without a second server.

Request fields: ``model`` (required, the id of ``/v1/models``), ``max_tokens`` (chat also
``max_completion_tokens``), ``temperature`` (0 = greedy), ``top_p``, ``stop`` (a string or a list),
``seed``, ``n`` (1 only), ``stream`` and ``stream_options.include_usage``; as extensions ``top_k``
and ``repetition_penalty``. OpenAI fields that would change nothing at their neutral value
(``frequency_penalty: 0``, ``logprobs: false``, ``user``…) are accepted; any other value of them,
and any field OpenAI does not have, is refused with 400 naming it in ``param``, as OpenAI does.
Errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 a bad field,
401 a missing or wrong API key, 404 an unknown model or path, 405 a wrong method, 500 a failure.

How a request runs: generation is the in-process :class:`engine.serve.session.InferenceSession`
(the worker's own code), one at a time on one thread, in arrival order. Its deltas cross to the
event loop through :class:`_Pipe`, which wakes the loop at most every :data:`CHUNK_INTERVAL_S`
(50 ms), and a stream sends what arrived since the last chunk as one chunk: the HTTP layer costs a
fixed amount per chunk, not per token, so it stays a small share however fast the model is (a
model slower than 20 tokens/s still streams token by token; the first token goes at once). A client that
disconnects (or a server that stops) sets the generation's ``cancelled`` event, which stops it
within one token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import math
import os
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.serve import protocol

#: Appended to the served id for the same weights with the adapter switched off.
BASE_SUFFIX = ":base"

#: What the generation code must offer (engine.serve.session.InferenceSession, or a test's fake).
Emit = Callable[..., Any]

#: OpenAI's finish reasons; ours map onto them ("cancelled" was cut short: "stop").
_FINISH = {"stop": "stop", "length": "length", "cancelled": "stop", "error": "stop"}

#: OpenAI fields accepted when they hold their neutral value (which changes nothing here).
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (0, 0.0, None),
    "presence_penalty": (0, 0.0, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "logit_bias": (None,),  # {} too, see _neutral
    "user": (),  # any value: an end-user id for abuse tracking
    "metadata": (),
    "store": (),
    "service_tier": (),
    "parallel_tool_calls": (),
    "tools": (None,),
    "tool_choice": (None, "none", "auto"),
    "functions": (None,),
    "function_call": (None, "none", "auto"),
    "response_format": (None,),
    "echo": (False, None),
    "best_of": (1, None),
    "suffix": (None, ""),
    "modalities": (None,),
    "prediction": (None,),
}


class ApiError(Exception):
    """A request answered with an error in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


# ----------------------------------------------------------------------------- request parsing
#: Our protocol's field names -> OpenAI's, for errors the session raises.
_PARAM = {"max_new_tokens": "max_tokens", "prompt": "prompt", "system": "messages"}

_COMMON = ("model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "stop", "seed", "n")
_EXTENSIONS = ("top_k", "repetition_penalty")
_FIELDS = {
    "/v1/completions": frozenset((*_COMMON, *_EXTENSIONS, "prompt", *_NEUTRAL)),
    "/v1/chat/completions": frozenset(
        (*_COMMON, *_EXTENSIONS, "messages", "max_completion_tokens", *_NEUTRAL)
    ),
}


def _number(body: dict[str, Any], name: str, low: float, high: float, default: float, what: str) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, f"'{name}' must be a number, not {value!r}.", name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' is {value!r}; it must be {what}.", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, default: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{name}' must be a whole number, not {value!r}.", name)
    if value < low:
        raise ApiError(400, f"'{name}' is {value}; it must be at least {low}.", name)
    return value


def _neutral(name: str, value: Any) -> bool:
    allowed = _NEUTRAL[name]
    if not allowed:
        return True
    if name in ("logit_bias", "tools", "functions") and value in ({}, []):
        return True
    if name == "response_format" and isinstance(value, dict) and value.get("type") == "text":
        return True
    # True is not 1 and 0 is not False here: compare booleans with booleans only.
    return any(value is a or (isinstance(value, bool) == isinstance(a, bool) and value == a) for a in allowed)


def _content(where: str, content: Any) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": …}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise ApiError(
                    400, f"{where}.content[{i}] is not a text part; this server takes text only.", where
                )
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where}.content must be a string or a list of text parts.", f"{where}.content")


def parse_request(endpoint: str, body: Any, max_tokens_default: int) -> tuple[protocol.Generate, bool, bool]:
    """The generate request for an OpenAI body, whether to stream, and whether to send usage in the
    stream (``stream_options.include_usage``). ApiError (400, naming the field) when it is not valid."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS[endpoint])
    if unknown:
        raise ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    for name in sorted(set(body) & set(_NEUTRAL)):
        if not _neutral(name, body[name]):
            raise ApiError(400, f"'{name}' = {body[name]!r:.80} is not supported by this server.", name)
    n = _integer(body, "n", 1, 1)
    if n != 1:
        raise ApiError(400, f"'n' is {n}; this server makes one choice per request (n = 1).", "n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, f"'stream' must be true or false, not {stream!r}.", "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}):
        raise ApiError(400, "'stream_options' may only hold include_usage.", "stream_options")
    include_usage = bool((options or {}).get("include_usage"))
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise ApiError(400, "'stop' must be a string or a list of strings.", "stop")
    if any(not s for s in stops):
        raise ApiError(400, "'stop' strings must not be empty.", "stop")
    max_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    fields: dict[str, Any] = {
        "max_new_tokens": _integer(body, max_name, 1, max_tokens_default),
        "temperature": _number(body, "temperature", 0.0, 2.0, 1.0, "from 0 (greedy) to 2"),
        "top_p": _number(body, "top_p", 0.0, 1.0, 1.0, "from 0 to 1"),
        "top_k": _integer(body, "top_k", 0, 0),
        "repetition_penalty": _number(body, "repetition_penalty", 0.0, 100.0, 1.0, "positive"),
        "stop": stops,
        "seed": _integer(body, "seed", -(2**63), None),
    }
    if fields["top_p"] == 0.0:
        raise ApiError(400, "'top_p' is 0; it must be above 0 (1 keeps every token).", "top_p")
    if fields["repetition_penalty"] <= 0.0:
        raise ApiError(400, "'repetition_penalty' must be above 0 (1 is none).", "repetition_penalty")
    if endpoint == "/v1/completions":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(
                400,
                "'prompt' must be a string (one prompt per request; token arrays are not taken).",
                "prompt",
            )
        request = protocol.Generate(id="", prompt=prompt, **fields)
    else:
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects.", "messages")
        messages = []
        for i, item in enumerate(raw):
            where = f"messages[{i}]"
            if not isinstance(item, dict):
                raise ApiError(400, f"{where} must be an object with role and content.", where)
            role = item.get("role")
            role = "system" if role == "developer" else role
            if role not in protocol.ROLES:
                raise ApiError(
                    400,
                    f"{where}.role is {item.get('role')!r}; use one of {', '.join(protocol.ROLES)}.",
                    f"{where}.role",
                )
            messages.append(protocol.Message(role, _content(where, item.get("content"))))
        request = protocol.Generate(id="", messages=messages, **fields)
    return request, bool(stream), include_usage


# ----------------------------------------------------------------------------------- the pipe
class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


#: Seconds between wake-ups of the event loop by one generation: at most this many chunks a
#: second (1 / CHUNK_INTERVAL_S) per stream, however fast the model is. A model slower than that
#: streams token by token; a faster one sends the tokens of each interval as one chunk.
CHUNK_INTERVAL_S = 0.05


class _Pipe:
    """Generation thread -> event loop: ``put`` from the thread, ``get`` (everything that arrived
    since the last ``get``) on the loop.

    The thread wakes the loop for the first item, for a ``final`` one, and otherwise at most every
    ``interval`` seconds; ``get`` also looks every ``interval`` seconds by itself, so no item waits
    longer than that. Waking the loop per token would make it compete with the generation thread
    for the GIL on every token (measured with a 2,800 tokens/s model on a CPU: -25% tokens/s
    streamed token by token, -10% at a 20 ms interval, -6% at 50 ms)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = CHUNK_INTERVAL_S) -> None:
        self._loop = loop
        self._interval = interval
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        self._armed = False
        self._last_wake = -math.inf

    def put(self, item: Any, final: bool = False) -> None:
        with self._lock:
            self._items.append(item)
            if self._armed:
                return
            now = time.monotonic()
            if not final and now - self._last_wake < self._interval:
                return  # get() looks again within the interval
            self._armed = True
            self._last_wake = now
        with contextlib.suppress(RuntimeError):  # the loop closed (server gone): nobody reads
            self._loop.call_soon_threadsafe(self._event.set)

    async def get(self) -> list[Any]:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event.wait(), self._interval)
            with self._lock:
                self._event.clear()
                self._armed = False
                if self._items:
                    items = list(self._items)
                    self._items.clear()
                    return items


def _sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class _GuardedStream(StreamingResponse):
    """A streaming response that sets the generation's ``cancelled`` event however it ends (also
    when it never started: a client gone before the first byte)."""

    def __init__(self, content: AsyncIterator[bytes], cancelled: threading.Event) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._cancelled = cancelled

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cancelled.set()


# ------------------------------------------------------------------------------------ the app
class ServeApp:
    """The ASGI app (:attr:`app`) around one loaded session.

    ``session`` offers ``generate(request, on_delta, cancelled) -> Done`` (an
    :class:`~engine.serve.session.InferenceSession`). ``model_id`` is what ``/v1/models`` lists;
    ``aliases`` are further names a request's ``model`` may use (the name it was loaded by).
    ``adapter_switch``: the session holds a LoRA adapter that a request may switch off, so each
    name also has a ``:base`` twin (:data:`BASE_SUFFIX`) that answers as the base model.
    ``api_key``: the key requests must carry (None: none). ``emit``: where request events go
    (an :class:`~engine.runs.session.EngineSession`'s ``emit``), or None."""

    def __init__(
        self,
        session: Any,
        *,
        model_id: str,
        aliases: tuple[str, ...] = (),
        adapter_switch: bool = False,
        api_key: str | None = None,
        emit: Emit | None = None,
        created: int | None = None,
        max_tokens_default: int = 16,
        chat_max_tokens_default: int = 256,
    ) -> None:
        self.session = session
        self.model_id = model_id
        self.names = {model_id, *aliases}
        self.base_names = {name + BASE_SUFFIX for name in self.names} if adapter_switch else set()
        self._key = api_key.encode() if api_key else None
        self.emit = emit
        self.created = int(created or time.time())
        self.max_tokens = {
            "/v1/completions": max_tokens_default,
            "/v1/chat/completions": chat_max_tokens_default,
        }
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._active: set[threading.Event] = set()
        self._closing = False
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            ],
            exception_handlers={HTTPException: self._http_error, Exception: self._server_error},
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def cancel_all(self) -> None:
        """Stop every generation (running and queued): the server is shutting down."""
        self._closing = True
        for event in list(self._active):
            event.set()

    def close(self) -> None:
        self.cancel_all()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- plumbing ------------------------------------------------------------------------------
    def _record(self, endpoint: str, status: int, started: float, **fields: Any) -> None:
        if self.emit is None:
            return
        with contextlib.suppress(Exception):  # a full disk must not turn an answer into a 500
            self.emit(
                "request",
                endpoint=endpoint,
                status=status,
                method="GET" if endpoint.startswith("/v1/models") else "POST",
                duration_s=round(time.monotonic() - started, 6),
                **fields,
            )

    def _check_key(self, request: Request) -> None:
        if self._key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as `Authorization: Bearer KEY` (the openai "
                "client: api_key=KEY).",
                kind="invalid_request_error",
                code="invalid_api_key",
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._key):
            raise ApiError(
                401, "Incorrect API key provided.", kind="invalid_request_error", code="invalid_api_key"
            )

    def _check_model(self, name: Any) -> None:
        if name is None:
            raise ApiError(400, "you must provide a model parameter.", "model")
        if not isinstance(name, str):
            raise ApiError(400, f"'model' must be a string, not {name!r}.", "model")
        if name not in self.names and name not in self.base_names:
            served = "', '".join(self._ids())
            raise ApiError(
                404,
                f"The model '{name}' does not exist; this server serves '{served}' (GET /v1/models).",
                "model",
                code="model_not_found",
            )

    def _ids(self) -> list[str]:
        """The ids ``/v1/models`` lists: the model, then its adapter-off twin when it has one."""
        return [self.model_id] + ([self.model_id + BASE_SUFFIX] if self.base_names else [])

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            error = ApiError(404, f"no such endpoint: {request.url.path}", code="unknown_url")
        elif exc.status_code == 405:
            error = ApiError(
                405, f"{request.method} is not allowed on {request.url.path}.", code="method_not_allowed"
            )
        else:
            error = ApiError(exc.status_code, str(exc.detail))
        return error.response()

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error").response()

    def _model_card(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": self.created, "owned_by": "neural-canvas"}

    # -- endpoints -----------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            self._check_key(request)
        except ApiError as error:
            self._record("/v1/models", error.status, started, error=error.message)
            return error.response()
        self._record("/v1/models", 200, started)
        return JSONResponse({"object": "list", "data": [self._model_card(i) for i in self._ids()]})

    async def model(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            self._check_key(request)
            name = request.path_params["model_id"]
            if name not in self.names and name not in self.base_names:
                raise ApiError(404, f"The model '{name}' does not exist.", "model", code="model_not_found")
        except ApiError as error:
            self._record("/v1/models", error.status, started, error=error.message)
            return error.response()
        self._record("/v1/models", 200, started)
        base = name in self.base_names
        return JSONResponse(self._model_card(self.model_id + (BASE_SUFFIX if base else "")))

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "/v1/completions")

    async def chat_completions(self, request: Request) -> Response:
        return await self._generate(request, "/v1/chat/completions")

    async def _generate(self, request: Request, endpoint: str) -> Response:
        started = time.monotonic()
        stream = False
        try:
            self._check_key(request)
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise ApiError(400, f"the request body is not JSON: {exc}.") from None
            if not isinstance(body, dict):
                raise ApiError(400, "the request body must be a JSON object.")
            self._check_model(body.get("model"))
            gen, stream, include_usage = parse_request(endpoint, body, self.max_tokens[endpoint])
            gen.adapter = body["model"] not in self.base_names
            served = self.model_id + ("" if gen.adapter else BASE_SUFFIX)
            if self._closing:
                raise ApiError(503, "the server is shutting down.", kind="server_error")
            gen.id = uuid.uuid4().hex
            if stream:
                return await self._stream(request, endpoint, gen, include_usage, started, served)
            return await self._complete(request, endpoint, gen, started, served)
        except ApiError as error:
            self._record(endpoint, error.status, started, stream=stream, error=error.message)
            return error.response()
        except Exception as exc:
            error = ApiError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error")
            self._record(endpoint, 500, started, stream=stream, error=error.message)
            return error.response()

    def _run(
        self, gen: protocol.Generate, on_delta: Callable[[protocol.Delta], None], cancelled: threading.Event
    ) -> protocol.Done:
        """On the generation thread: one generate (skipped when cancelled while it waited)."""
        if cancelled.is_set():
            return protocol.Done(id=gen.id, finish_reason="cancelled")
        return self.session.generate(gen, on_delta, cancelled)

    def _run_into(self, gen: protocol.Generate, pipe: _Pipe, cancelled: threading.Event) -> None:
        try:
            pipe.put(self._run(gen, pipe.put, cancelled), final=True)
        except BaseException as exc:
            pipe.put(_Failed(exc), final=True)

    @staticmethod
    def _error_of(exc: BaseException) -> ApiError:
        if isinstance(exc, protocol.ProtocolError):
            field = exc.field
            param = _PARAM.get(field, field) if field else None
            return ApiError(400, exc.message, param)
        return ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", kind="server_error")

    async def _watch_disconnect(self, request: Request, cancelled: threading.Event, gone: list[bool]) -> None:
        """Set ``cancelled`` when the client disconnects (uvicorn answers ``receive`` then)."""
        while True:
            message = await request.receive()
            if message.get("type") == "http.disconnect":
                gone.append(True)
                cancelled.set()
                return

    def _usage(self, done: protocol.Done) -> dict[str, int]:
        prompt, completion = int(done.prompt_tokens or 0), int(done.new_tokens or 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _figures(self, done: protocol.Done) -> dict[str, Any]:
        return {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.new_tokens,
            "tokens_per_s": done.tokens_per_s,
            "time_to_first_token_s": done.time_to_first_token_s,
            "finish_reason": done.finish_reason,
        }

    async def _complete(
        self, request: Request, endpoint: str, gen: protocol.Generate, started: float, served: str
    ) -> Response:
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        gone: list[bool] = []
        self._active.add(cancelled)
        watcher = asyncio.ensure_future(self._watch_disconnect(request, cancelled, gone))
        try:
            done = await loop.run_in_executor(self._executor, self._run, gen, _ignore, cancelled)
        except Exception as exc:
            raise self._error_of(exc) from exc
        finally:
            cancelled.set()  # a no-op after a normal end; stops the thread when this task was cancelled
            self._active.discard(cancelled)
            watcher.cancel()
        status = 499 if gone else 200
        self._record(endpoint, status, started, stream=False, model=served, **self._figures(done))
        finish = _FINISH.get(done.finish_reason, "stop")
        if endpoint == "/v1/completions":
            choice: dict[str, Any] = {
                "text": done.text,
                "index": 0,
                "logprobs": None,
                "finish_reason": finish,
            }
            kind, prefix = "text_completion", "cmpl-"
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "logprobs": None,
                "finish_reason": finish,
            }
            kind, prefix = "chat.completion", "chatcmpl-"
        return JSONResponse(
            {
                "id": prefix + gen.id,
                "object": kind,
                "created": int(time.time()),
                "model": served,
                "choices": [choice],
                "usage": self._usage(done),
            }
        )

    async def _stream(
        self,
        request: Request,
        endpoint: str,
        gen: protocol.Generate,
        include_usage: bool,
        started: float,
        served: str,
    ) -> Response:
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        gone: list[bool] = []
        self._active.add(cancelled)
        pipe = _Pipe(loop)
        watcher = asyncio.ensure_future(self._watch_disconnect(request, cancelled, gone))
        loop.run_in_executor(self._executor, self._run_into, gen, pipe, cancelled)
        try:
            # Wait for the first reply, so a request the session refuses (a prompt longer than the
            # model's context, a chat for a model without a template) still gets its 400.
            first = await pipe.get()
        except BaseException:
            cancelled.set()
            self._active.discard(cancelled)
            raise
        finally:
            watcher.cancel()
        if first and isinstance(first[0], _Failed):
            self._active.discard(cancelled)
            raise self._error_of(first[0].error)
        chat = endpoint == "/v1/chat/completions"
        base = {
            "id": ("chatcmpl-" if chat else "cmpl-") + gen.id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": served,
        }

        def chunk(delta: dict[str, Any] | str, finish: str | None = None) -> bytes:
            if chat:
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish,
                }
            else:
                choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
            body = {**base, "choices": [choice]}
            if include_usage:
                body["usage"] = None
            return _sse(body)

        async def events() -> AsyncIterator[bytes]:
            tokens = 0
            done: protocol.Done | None = None
            error: ApiError | None = None
            try:
                if chat:
                    yield chunk({"role": "assistant", "content": ""})
                items = first
                while True:
                    texts = []
                    for item in items:
                        if isinstance(item, protocol.Delta):
                            tokens += len(item.tokens)
                            if item.text:
                                texts.append(item.text)
                        elif isinstance(item, protocol.Done):
                            done = item
                        elif isinstance(item, _Failed):
                            error = self._error_of(item.error)
                    if texts:
                        text = "".join(texts)
                        yield chunk({"content": text} if chat else text)
                    if done is not None:
                        yield chunk({} if chat else "", _FINISH.get(done.finish_reason, "stop"))
                        if include_usage:
                            yield _sse({**base, "choices": [], "usage": self._usage(done)})
                        yield _sse("[DONE]")
                        return
                    if error is not None:
                        yield _sse(error.body())
                        yield _sse("[DONE]")
                        return
                    items = await pipe.get()
            finally:
                cancelled.set()
                self._active.discard(cancelled)
                if done is not None:
                    status = 499 if gone else 200
                    self._record(endpoint, status, started, stream=True, model=served, **self._figures(done))
                elif error is not None:
                    self._record(endpoint, error.status, started, stream=True, error=error.message)
                else:  # the client went away mid-stream
                    self._record(
                        endpoint,
                        499,
                        started,
                        stream=True,
                        model=served,
                        completion_tokens=tokens,
                        finish_reason="cancelled",
                    )

        return _GuardedStream(events(), cancelled)


def _ignore(delta: protocol.Delta) -> None:
    return None


# ------------------------------------------------------------------------------ serving a socket
def _quiet_server(config: Any) -> Any:
    """A uvicorn Server that leaves signal handling to the run (engine.runs.session.run_context):
    SIGTERM from ``canvas stop`` sets the run's stop flag, and :func:`serve` turns that into
    uvicorn's graceful shutdown."""
    import uvicorn

    class Server(uvicorn.Server):
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
            return contextlib.nullcontext()

    return Server(config)


def serve(
    app: ServeApp,
    sock: Any,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_listening: Callable[[], None] | None = None,
    poll_s: float = 0.1,
    log_level: str = "warning",
) -> None:
    """Serve ``app`` on the bound socket ``sock`` until ``should_stop()`` (polled every ``poll_s``):
    then stop accepting, cancel the generations in flight and let the answers finish (uvicorn's
    graceful shutdown), and return. ``on_listening`` runs once the server accepts connections."""
    import uvicorn

    config = uvicorn.Config(
        app.app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=30,
    )
    server = _quiet_server(config)

    async def watch() -> None:
        announced = False
        while not server.should_exit:
            if not announced and server.started:
                announced = True
                if on_listening is not None:
                    on_listening()
            if should_stop():
                app.cancel_all()
                server.should_exit = True
                return
            await asyncio.sleep(poll_s)

    async def main() -> None:
        watcher = asyncio.ensure_future(watch())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()

    asyncio.run(main())


# ------------------------------------------------------------------------------- the engine
def run_engine(run_dir: str) -> None:
    """The engine of a serve run: own the run, bind the port, load the model, serve until stopped."""
    from engine.runs.session import run_context
    from engine.runs.store import RunDir
    from engine.serve.launch import API_KEY_ENV, ServeConfig, bind_socket, url_for

    api_key = os.environ.pop(API_KEY_ENV, None)  # children (and /proc/self/environ readers) never see it
    run = RunDir(Path(run_dir).resolve())
    with run_context(run) as s:
        cfg = ServeConfig.from_dict(run.read_meta().config)
        if cfg.api_key and not api_key:
            raise RuntimeError(
                f"this serve run needs an API key, and the engine got none ({API_KEY_ENV}); start it "
                "again with `canvas serve … --api-key KEY`."
            )
        sock = bind_socket(cfg.host, cfg.port)  # before the model loads: a port in use fails fast
        port = sock.getsockname()[1]
        s.log(f"loading {cfg.model} ({cfg.checkpoint or 'default checkpoint'}) on {cfg.device}")
        from engine.serve.session import InferenceSession

        session = InferenceSession()
        try:
            ready = session.load(
                protocol.Load(
                    id="load",
                    model=cfg.model,
                    checkpoint=cfg.checkpoint,
                    adapter=cfg.adapter,
                    device=cfg.device,
                    dtype=cfg.dtype,
                ),
                on_progress=lambda p: s.emit(
                    "progress", phase=p.phase or "load", done=p.done, total=p.total, unit=p.unit
                ),
            )
            s.emit(
                "run_info",
                config=cfg.to_dict(),
                params=ready.params,
                precision=ready.dtype,
                device=ready.device,
            )
            if ready.note:
                s.log(ready.note)
            if s.stop_requested:
                return
            url = url_for(cfg.host, port)
            app = ServeApp(
                session,
                model_id=cfg.served_name,
                aliases=tuple({cfg.model, ready.model} - {""}),
                adapter_switch=ready.adapter,
                api_key=api_key,
                emit=s.emit,
            )

            def listening() -> None:
                s.run.update_meta(url=url)
                twin = f" (and {cfg.served_name + BASE_SUFFIX!r}: the adapter off)" if ready.adapter else ""
                s.log(
                    f"serving {cfg.served_name!r}{twin} at {url}" + (" (API key required)" if api_key else "")
                )

            try:
                serve(app, sock, should_stop=lambda: s.stop_requested, on_listening=listening)
            finally:
                app.close()
            if not s.stop_requested:  # uvicorn ended on its own (it failed to start)
                raise RuntimeError("the HTTP server stopped unexpectedly; see engine.log")
        finally:
            session.close()
            sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.serve.http", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, help="the serve run's directory (made by canvas serve)")
    args = parser.parse_args(argv)
    run_engine(args.run_dir)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
