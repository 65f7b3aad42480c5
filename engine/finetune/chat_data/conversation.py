"""What a conversation is, and the check every loaded conversation passes.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant", "content": str}``:
at most one system message, first; then user and assistant turns alternating, starting with the
user and ending with the assistant's reply (the part the model learns to write). Whatever format a
row came in, it becomes this shape and then goes through :func:`validate_conversation`, so the
trainer sees one shape only.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from engine.config.errors import ConfigError

Message = dict[str, str]
Conversation = list[Message]
#: Where a row or conversation came from, as a phrase ("line 7 of chats.jsonl"), and the thing itself.
Located = tuple[str, Any]

ROLES = ("system", "user", "assistant")


def validate_conversation(conv: Any, where: str, *, field_name: str = "data") -> Conversation:
    """Check one conversation and return it clean (role and stripped content only).

    Rules: roles are system/user/assistant; content is non-empty text; a system message only
    first; then user and assistant alternate, starting with the user and ending with the
    assistant. Two turns in a row from the same speaker are an error, never merged: joining them
    would put words in someone's mouth.
    """
    if not isinstance(conv, list) or not conv:
        raise ConfigError(
            field_name, f"the conversation at {where} has no messages. Fix: add the turns or drop the row."
        )
    out: Conversation = []
    for number, message in enumerate(conv, start=1):
        label = f"message {number} of the conversation at {where}"
        if not isinstance(message, Mapping):
            raise ConfigError(
                field_name,
                f"{label} is a {type(message).__name__}, not a message. Fix: write it as "
                '{"role": "user", "content": "…"}.',
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ConfigError(
                field_name,
                f"{label} has role {role!r}; the allowed roles are {', '.join(ROLES)}. Fix: rename "
                "the role (e.g. human → user, gpt/bot → assistant), or pass the right ?format=.",
            )
        if not isinstance(content, str):
            raise ConfigError(
                field_name,
                f"{label} ({role}) has content of type {type(content).__name__} ({str(content)[:60]}), "
                "not text. Fix: make 'content' a string (multimodal parts are not supported).",
            )
        if not content.strip():
            raise ConfigError(
                field_name,
                f"{label} ({role}) has empty content. Fix: fill it in, or drop the conversation.",
            )
        out.append({"role": role, "content": content.strip()})
    _check_turn_order(out, where, field_name)
    return out


def _check_turn_order(conv: Conversation, where: str, field_name: str) -> None:
    for number, message in enumerate(conv[1:], start=2):
        if message["role"] == "system":
            raise ConfigError(
                field_name,
                f"message {number} of the conversation at {where} is a system message; a system "
                "message is allowed only first. Fix: move it to the start, or make it a user turn.",
            )
    turns = conv[1:] if conv[0]["role"] == "system" else conv
    for number, (a, b) in enumerate(itertools.pairwise(turns), start=len(conv) - len(turns) + 1):
        if a["role"] == b["role"]:
            raise ConfigError(
                field_name,
                f"messages {number} and {number + 1} of the conversation at {where} are both "
                f"{a['role']} turns; user and assistant must alternate (merging them would change "
                "what was said). Fix: join them into one message yourself, or remove one.",
            )
    if not any(m["role"] == "assistant" for m in turns):
        raise ConfigError(
            field_name,
            f"the conversation at {where} has no assistant turn, so there is nothing to learn "
            "from. Fix: add the assistant's reply, or drop the row.",
        )
    if turns[0]["role"] != "user":
        raise ConfigError(
            field_name,
            f"the conversation at {where} starts with an assistant turn: the first turn (after "
            "an optional system message) must be the user's. Fix: add the user message it answers.",
        )
    if turns[-1]["role"] == "user":
        raise ConfigError(
            field_name,
            f"the conversation at {where} ends with a user turn: the last message must be the "
            "assistant's reply. Fix: add the reply, or remove the trailing user message.",
        )
