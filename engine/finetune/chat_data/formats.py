"""Row formats: how a row of each known layout becomes a conversation, and which layout a row has.

One conversation per row, except OpenAssistant's (see :mod:`engine.finetune.chat_data.oasst`):

* ``messages``: ``{"messages": [{"role": …, "content": …}, …]}``, optional top-level ``system``;
* ``sharegpt``: ``{"conversations": [{"from": "human" | "gpt" | "system", "value": …}, …]}``;
* ``guanaco``: ``{"text": "### Human: …### Assistant: …"}``, as in the QLoRA paper;
* ``oasst``: one row per *message* of OpenAssistant's trees;
* ``alpaca``: ``{"instruction": …, "input": …, "output": …}``.

A converter only reshapes: it errors on a field that is missing or of the wrong type, naming the
row, and leaves the rules of a good conversation to
:func:`engine.finetune.chat_data.conversation.validate_conversation`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.config.errors import ConfigError
from engine.finetune.chat_data.conversation import Conversation, Located
from engine.finetune.chat_data.spec import FORMATS, ChatDataSpec

#: The field each format reads when ``column=`` is not given.
_DEFAULT_COLUMN = {"messages": "messages", "sharegpt": "conversations", "guanaco": "text", "oasst": "text"}
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
#: The fields every OpenAssistant message row has (besides its text).
OASST_FIELDS = ("message_id", "parent_id", "role")
_GUANACO_TURN = re.compile(r"### (Human|Assistant):")


def resolve_format(spec: ChatDataSpec, first: Located, field_name: str) -> tuple[str, str]:
    """The spec's format, or the one the first row's fields fit (an error lists them otherwise)."""
    if spec.format is not None:
        return spec.format, spec.column or _DEFAULT_COLUMN.get(spec.format, "")
    detected = detect_format(first[1], spec.column)
    if detected is None:
        where, row = first
        column = f" (column {spec.column!r})" if spec.column else ""
        raise ConfigError(
            field_name,
            f"{where}{column} does not look like any chat format: it has {describe_fields(row)}. Expected "
            "`messages` (a list of role/content), `conversations` (a list of from/value, ShareGPT), "
            "`text` with '### Human:'/'### Assistant:' (Guanaco), message_id/parent_id/role/text "
            "(OpenAssistant) or instruction/output (Alpaca). Fix: rename the fields, or pass "
            f"?format= one of {', '.join(FORMATS)} (and ?column=NAME for the field holding the "
            "messages or text).",
        )
    return detected


def detect_format(row: Mapping[str, Any], column: str | None = None) -> tuple[str, str] | None:
    """``(format, column)`` that fits a row's fields, or None when nothing does."""
    candidates = [column] if column else ["messages", "conversations"]
    for key in candidates:
        value = row.get(key)
        if isinstance(value, list) and value and isinstance(value[0], Mapping):
            if "role" in value[0] and "content" in value[0]:
                return "messages", key
            if "from" in value[0] and "value" in value[0]:
                return "sharegpt", key
    text_key = column or "text"
    if all(k in row for k in OASST_FIELDS) and text_key in row:
        return "oasst", text_key
    if isinstance(row.get(text_key), str) and "### Human:" in row[text_key]:
        return "guanaco", text_key
    if not column and "instruction" in row and "output" in row:
        return "alpaca", ""
    return None


def describe_fields(row: Mapping[str, Any]) -> str:
    return ", ".join(repr(k) for k in row) if row else "no fields at all"


def row_field(row: Mapping[str, Any], name: str, where: str, fmt: str, field_name: str) -> Any:
    """``row[name]``, or the error that lists the fields the row does have."""
    if name in row and row[name] is not None:
        return row[name]
    others = [f for f in FORMATS if f != fmt]
    raise ConfigError(
        field_name,
        f"{where} has no {name!r} field; it has {describe_fields(row)}. Fix: give every row a {name!r} "
        f"field ({fmt} format), or name the field holding it with ?column=NAME, or pass the "
        f"format that fits (?format= one of {', '.join(others)}).",
    )


def _message_list(row: Mapping[str, Any], column: str, where: str, fmt: str, field_name: str) -> list:
    value = row_field(row, column, where, fmt, field_name)
    if not isinstance(value, list):
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} holds a {type(value).__name__}, not a list of messages. "
            f"Fix: make it a list of messages, or pass the right ?format= (this was read as {fmt}).",
        )
    return value


def _from_messages(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    conv: Conversation = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        conv.append({"role": "system", "content": system})
    for number, item in enumerate(_message_list(row, column, where, "messages", field_name), start=1):
        if not isinstance(item, Mapping) or "role" not in item or "content" not in item:
            found = describe_fields(item) if isinstance(item, Mapping) else f"a {type(item).__name__}"
            raise ConfigError(
                field_name,
                f"message {number} in {column!r} of {where} needs 'role' and 'content'; it has "
                f'{found}. Fix: write each message as {{"role": "user", "content": "…"}}, or '
                "pass ?format=sharegpt for from/value messages.",
            )
        if item["role"] == "system" and conv and number == 1:
            raise ConfigError(
                field_name,
                f"{where} has both a top-level 'system' field and a system message first in "
                f"{column!r}. Fix: keep only one of them.",
            )
        conv.append({"role": item["role"], "content": item["content"]})
    return conv


def _from_sharegpt(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    conv: Conversation = []
    for number, item in enumerate(_message_list(row, column, where, "sharegpt", field_name), start=1):
        if not isinstance(item, Mapping) or "from" not in item or "value" not in item:
            found = describe_fields(item) if isinstance(item, Mapping) else f"a {type(item).__name__}"
            raise ConfigError(
                field_name,
                f"message {number} in {column!r} of {where} needs 'from' and 'value' (ShareGPT); it "
                f'has {found}. Fix: write each message as {{"from": "human", "value": "…"}}, or '
                "pass ?format=messages for role/content messages.",
            )
        speaker = item["from"]
        role = _SHAREGPT_ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
        if role is None:
            raise ConfigError(
                field_name,
                f"message {number} in {column!r} of {where} is from {speaker!r}; ShareGPT speakers "
                f"must be one of {', '.join(_SHAREGPT_ROLES)}. Fix: rename the speaker.",
            )
        conv.append({"role": role, "content": item["value"]})
    return conv


def _from_guanaco(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    text = row_field(row, column, where, "guanaco", field_name)
    if not isinstance(text, str):
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} holds a {type(text).__name__}, not text. Fix: make it a "
            "string '### Human: …### Assistant: …'.",
        )
    parts = _GUANACO_TURN.split(text)
    if len(parts) == 1:
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} has no '### Human:' or '### Assistant:' markers: "
            f"{text.strip()[:60]!r}. Fix: write turns as '### Human: …### Assistant: …', or pass "
            "the right ?format=.",
        )
    if parts[0].strip():
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} has text before the first turn marker: "
            f"{parts[0].strip()[:60]!r}. Fix: start the text with '### Human:'.",
        )
    return [
        {"role": "user" if speaker == "Human" else "assistant", "content": content}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _from_alpaca(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    instruction = row_field(row, "instruction", where, "alpaca", field_name)
    output = row_field(row, "output", where, "alpaca", field_name)
    extra = row.get("input")
    prompt = instruction
    if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
        prompt = f"{instruction.strip()}\n\n{extra.strip()}"
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


#: The converter of every one-conversation-per-row format (all but oasst).
ROW_CONVERTERS: dict[str, Callable[[Mapping[str, Any], str, str, str], Conversation]] = {
    "messages": _from_messages,
    "sharegpt": _from_sharegpt,
    "guanaco": _from_guanaco,
    "alpaca": _from_alpaca,
}
