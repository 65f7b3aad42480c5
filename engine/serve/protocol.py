"""The inference worker's JSON-lines protocol: the one module both sides import. Torch-free.

An inference worker (``python -m engine.serve.worker``) holds one loaded model and talks over its
stdin/stdout, one JSON object a line, like ``events.jsonl``. The console, ``canvas generate`` and
``canvas chat`` are its clients (:mod:`engine.serve.client`); ``canvas serve`` drives the same
inference code in process.

Every line carries ``"v"`` (:data:`PROTOCOL_VERSION`). A **request** (client → worker) has ``"op"``
and an ``"id"`` the client chooses; every **reply** (worker → client) has ``"type"`` and the
``"id"`` of the request it answers (``null`` for an error about a line that had no usable id)::

    → {"v":1, "op":"load", "id":"1", "model":"my-run", "checkpoint":"best"}
    ← {"v":1, "type":"progress", "id":"1", "phase":"load", "done":1, "total":3, "unit":"steps", ...}
    ← {"v":1, "type":"ready", "id":"1", "params":5012480, "dtype":"float32", "device":"cpu", ...}
    → {"v":1, "op":"generate", "id":"2", "messages":[{"role":"user","content":"Hi"}], "max_new_tokens":64}
    ← {"v":1, "type":"delta", "id":"2", "text":"Hel", "tokens":[412]}        (one or more)
    ← {"v":1, "type":"done", "id":"2", "text":"Hello", "finish_reason":"stop", "prompt_tokens":9, ...}
    → {"v":1, "op":"cancel", "id":"3", "target":"2"}      (the generate ends with finish_reason "cancelled")
    → {"v":1, "op":"shutdown", "id":"4"}
    ← {"v":1, "type":"bye", "id":"4"}

Rules: a malformed or invalid request gets one ``error`` reply naming the field, and the worker
keeps serving; replies to one request arrive in order (progress… then ready; delta… then done);
``cancel`` is answered by the cancelled request's ``done`` (``finish_reason`` ``"cancelled"``,
the partial text kept), not by a reply of its own; one generate runs at a time and a second one
waits its turn. Unknown fields are rejected in requests (a typo must not be silently ignored) and
ignored in replies (an older client reads a newer worker). Adding a message type or an optional
field keeps :data:`PROTOCOL_VERSION`; changing a field's meaning bumps it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: Version of the field meanings below; written into every line as ``v``.
PROTOCOL_VERSION = 1

#: Roles a chat message may have.
ROLES = ("system", "user", "assistant")

#: Why a generation ended.
FINISH_REASONS = ("stop", "length", "cancelled", "error")


class ProtocolError(ValueError):
    """A request that cannot be served; ``field`` names the offending field (None: the whole line)."""

    def __init__(self, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


# --------------------------------------------------------------------------------------- requests
@dataclass
class Request:
    """Base of requests. ``id`` is chosen by the client and echoed by every reply to it."""

    OP: ClassVar[str] = ""
    id: str


@dataclass
class Load(Request):
    """Load ``model``: a run (id, id prefix or name), a model folder, or a cached Hub id.

    ``checkpoint``: for a pre-training run ``best``, ``last`` or a step number (default: best,
    else the newest); the newest checkpoint of a run that is still training is read without
    disturbing it. ``adapter``: a LoRA adapter folder to put on a folder or Hub base (a fine-tune
    run brings its own). ``device``: ``auto`` (the GPU when free enough, else the CPU), ``cpu`` or
    ``cuda``. ``dtype``: ``auto`` or a torch dtype name."""

    OP: ClassVar[str] = "load"
    model: str
    checkpoint: str | None = None
    adapter: str | None = None
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class Message:
    role: str
    content: str


@dataclass
class Generate(Request):
    """Generate a continuation of ``prompt`` (plain text, sent as is) **or** a reply to
    ``messages`` (formatted by the model's chat template, with ``system`` as the system prompt).

    ``temperature = 0`` is greedy. ``stop``: strings that end the text (not included in it).
    ``adapter``: False answers with the fine-tune's adapter switched off (the base model), on the
    same loaded weights. ``seed``: makes sampling reproducible."""

    OP: ClassVar[str] = "generate"
    prompt: str | None = None
    messages: list[Message] | None = None
    system: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    adapter: bool = True


@dataclass
class Render(Request):
    """The exact prompt text and token count ``generate`` would feed the model for these fields."""

    OP: ClassVar[str] = "render"
    prompt: str | None = None
    messages: list[Message] | None = None
    system: str | None = None
    adapter: bool = True


@dataclass
class Cancel(Request):
    """Stop the generate request ``target`` within one token; its ``done`` keeps the partial text."""

    OP: ClassVar[str] = "cancel"
    target: str


@dataclass
class Shutdown(Request):
    """Free the model and exit after replying ``bye``."""

    OP: ClassVar[str] = "shutdown"


REQUEST_TYPES: dict[str, type[Request]] = {cls.OP: cls for cls in (Load, Generate, Render, Cancel, Shutdown)}


# ---------------------------------------------------------------------------------------- replies
@dataclass
class Reply:
    """Base of replies: ``id`` of the request answered."""

    TYPE: ClassVar[str] = ""
    id: str | None


@dataclass
class Progress(Reply):
    """Loading progress: ``done`` of ``total`` ``unit`` in ``phase`` (``total`` None when unknown)."""

    TYPE: ClassVar[str] = "progress"
    phase: str = ""
    done: float = 0
    total: float | None = None
    unit: str = ""
    message: str = ""


@dataclass
class Ready(Reply):
    """The model is loaded. ``kind``: ``pretrain`` (a plain continuation model: no chat
    template), ``finetune`` (chat template and a switchable adapter) or ``hf`` (a folder or Hub
    model). ``memory``: bytes the weights take on ``device``; ``note``: anything the user should
    know (e.g. "loaded on CPU: the GPU is busy with a training run")."""

    TYPE: ClassVar[str] = "ready"
    model: str = ""
    kind: str = ""
    checkpoint: str | None = None
    params: int = 0
    dtype: str = ""
    device: str = ""
    memory: int | None = None
    context: int | None = None
    chat: bool = False
    adapter: bool = False
    training: bool = False
    note: str = ""


@dataclass
class Delta(Reply):
    """New text of a generation (may be empty while a multi-byte character is incomplete) and the
    token ids it came from."""

    TYPE: ClassVar[str] = "delta"
    text: str = ""
    tokens: list[int] = field(default_factory=list)


@dataclass
class Done(Reply):
    """The end of a generation: the whole new ``text`` (stop strings removed), why it ended, and
    its figures. ``time_to_first_token_s`` and ``tokens_per_s`` are None when no token came."""

    TYPE: ClassVar[str] = "done"
    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    new_tokens: int = 0
    time_to_first_token_s: float | None = None
    tokens_per_s: float | None = None


@dataclass
class Rendered(Reply):
    """What the model sees for a render request: the prompt ``text`` and its ``tokens`` count."""

    TYPE: ClassVar[str] = "rendered"
    text: str = ""
    tokens: int = 0


@dataclass
class Error(Reply):
    """A request that could not be served. ``field`` names the offending field when there is one;
    ``message`` is one paragraph that says what to do."""

    TYPE: ClassVar[str] = "error"
    message: str = ""
    field: str | None = None


@dataclass
class Bye(Reply):
    """The answer to ``shutdown``: the worker exits after writing it."""

    TYPE: ClassVar[str] = "bye"


REPLY_TYPES: dict[str, type[Reply]] = {
    cls.TYPE: cls for cls in (Progress, Ready, Delta, Done, Rendered, Error, Bye)
}


# ----------------------------------------------------------------------------------- encoding
def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode(message: Request | Reply) -> bytes:
    """One line (with its newline) for a request or a reply."""
    record: dict[str, Any] = {"v": PROTOCOL_VERSION}
    if isinstance(message, Request):
        record["op"] = message.OP
    else:
        record["type"] = message.TYPE
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, list):
            value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
        record[f.name] = _plain(value)
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _check(op: str, name: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's declared type, or ProtocolError naming the field."""
    text = str(hint)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise ProtocolError(name, f"{op}: field {name!r} cannot be null.")
    for base, label in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if text.replace(" | None", "") == label:
            if base is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if not isinstance(value, base) or (base is int and isinstance(value, bool)):
                raise ProtocolError(
                    name,
                    f"{op}: field {name!r} must be {_TYPE_NAMES[base]}, not {value!r}.",
                )
            if base is float and not math.isfinite(value):
                raise ProtocolError(name, f"{op}: field {name!r} must be a finite number.")
            return value
    if text.startswith("list[str]"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProtocolError(name, f"{op}: field {name!r} must be a list of strings.")
        return value
    if text.startswith("list[Message]"):
        return _messages(op, name, value)
    return value


def _messages(op: str, name: str, value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise ProtocolError(
            name, f"{op}: field {name!r} must be a non-empty list of {{role, content}} objects."
        )
    out = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise ProtocolError(where, f"{op}: {where} must be an object with role and content.")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise ProtocolError(
                f"{where}.role",
                f"{op}: {where}.role is {role!r}; use one of {', '.join(ROLES)}.",
            )
        if not isinstance(content, str):
            raise ProtocolError(f"{where}.content", f"{op}: {where}.content must be a string.")
        out.append(Message(role, content))
    return out


def decode_request(line: bytes | str) -> Request:
    """The request in one line; ProtocolError (naming the field) when it is not a valid one.

    Checks what needs no model: the JSON shape, the op, unknown and missing fields, types, and
    that a generate/render has exactly one of ``prompt`` and ``messages``. Ranges (a negative
    temperature) are checked by the worker with the same messages as ``canvas generate``.
    """
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(None, f"not a JSON object: {exc}. Send one JSON object a line.") from None
    if not isinstance(record, dict):
        raise ProtocolError(None, "not a JSON object. Send one JSON object a line.")
    op = record.get("op")
    cls = REQUEST_TYPES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError("op", f"unknown op {op!r}; use one of {', '.join(REQUEST_TYPES)}.")
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = sorted(set(record) - set(hints) - {"v", "op"})
    if unknown:
        raise ProtocolError(
            unknown[0], f"{op}: unknown field(s) {', '.join(unknown)}; its fields are {', '.join(hints)}."
        )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in record:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f.name, f"{op}: field {f.name!r} is required.")
            continue
        kwargs[f.name] = _check(op, f.name, record[f.name], f.type)
    request = cls(**kwargs)
    if isinstance(request, (Generate, Render)) and (request.prompt is None) == (request.messages is None):
        raise ProtocolError(
            "prompt", f"{op}: give exactly one of 'prompt' (plain text) and 'messages' (a chat)."
        )
    return request


def decode_reply(line: bytes | str) -> Reply | None:
    """The reply in one line, or None for a line that is not a reply this version knows (ignored).
    Unknown fields are dropped; missing ones take their defaults."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    cls = REPLY_TYPES.get(str(record.get("type")))
    if cls is None:
        return None
    kwargs = {f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record}
    kwargs.setdefault("id", None)
    try:
        return cls(**kwargs)
    except TypeError:
        return None
