"""Saved conversations of the Chat screen: one JSON-lines file per conversation. Torch-free, no Textual.

A conversation with one of our runs is kept under that run (``<run>/chats/<id>.jsonl``), so it is
deleted with the run; one with a model folder or a Hub id under the store's own folder
(:func:`store_chats_dir`, beside ``runs/``: ``CANVAS_HOME/chats`` with ``--home``). Side by side,
each column is a conversation of its own, saved with its own model.

The file is append-only, one whole line a write (``O_APPEND``), so a crash never leaves a half
record that hides the others; a torn last line is skipped when read. The first line says what the
chat is with; every message line carries its timestamp, and every answer the sampling settings,
system prompt and figures it was made with::

    {"v": 1, "type": "chat", "id": "...", "created": "...", "model": "RUN", "label": "tiny",
     "checkpoint": "best", "adapter": true, "kind": "pretrain", "run": "/…/runs/RUN"}
    {"v": 1, "type": "message", "ts": "...", "role": "user", "content": "Hi"}
    {"v": 1, "type": "message", "ts": "...", "role": "assistant", "content": "Hello",
     "finish_reason": "stop", "new_tokens": 2, "tokens_per_s": 31.0, "system": "...",
     "sampling": {"temperature": 0.7, ...}}
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from canvas_tui.chat_models import ModelChoice
from engine.locations import ensure_private_dir, runs_dir
from engine.runs.store import list_runs

CHAT_VERSION = 1
CHATS = "chats"


def store_chats_dir() -> Path:
    """Where chats with a folder or Hub model go: ``chats/`` beside the run store."""
    return runs_dir().parent / CHATS


def chats_dir_for(choice: ModelChoice) -> Path:
    return Path(choice.run_path) / CHATS if choice.run_path else store_chats_dir()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_chat_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass
class ChatMessage:
    role: str
    content: str
    ts: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # an answer's figures and settings


@dataclass
class SavedChat:
    """A conversation read back: what it was with and its messages, in order."""

    path: Path
    id: str
    choice: ModelChoice
    created: str = ""
    messages: list[ChatMessage] = field(default_factory=list)
    skipped: int = 0  # unreadable lines (a torn last line)

    @property
    def title(self) -> str:
        first = next((m.content for m in self.messages if m.role == "user"), "")
        line = " ".join(first.split())
        return line[:60] + "…" if len(line) > 60 else line or "(empty)"

    @property
    def updated(self) -> str:
        return self.messages[-1].ts if self.messages else self.created


class ChatWriter:
    """Appends one conversation's lines. The file (and its header) is created with the first
    message, so opening a model and leaving writes nothing."""

    def __init__(self, choice: ModelChoice, path: Path | None = None, chat_id: str | None = None) -> None:
        self.choice = choice
        self.id = chat_id or (path.stem if path is not None else new_chat_id())
        self.path = path if path is not None else chats_dir_for(choice) / f"{self.id}.jsonl"
        self._started = self.path.exists()
        self._checked_end = not self._started

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps({"v": CHAT_VERSION, **record}, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if not self._checked_end:  # continuing a file a crash left with a torn last line
                self._checked_end = True
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line
            os.write(fd, line)  # one write of one whole line
        finally:
            os.close(fd)

    def _start(self) -> None:
        if self._started:
            return
        ensure_private_dir(self.path.parent)
        c = self.choice
        self._append(
            {
                "type": "chat",
                "id": self.id,
                "created": now_iso(),
                "model": c.model,
                "label": c.label,
                "checkpoint": c.checkpoint,
                "adapter": c.adapter,
                "kind": c.kind,
                "run": c.run_path,
            }
        )
        self._started = True

    def add(self, message: ChatMessage) -> None:
        self._start()
        record = {"type": "message", "ts": message.ts or now_iso(), "role": message.role}
        record["content"] = message.content
        record.update({k: v for k, v in message.extra.items() if k not in record})
        self._append(record)


def read_chat(path: Path) -> SavedChat:
    """A saved conversation; unreadable lines are counted in ``skipped``, not fatal. OSError and
    ValueError (no header) when the file is not a chat."""
    path = Path(path)
    header: dict[str, Any] | None = None
    messages: list[ChatMessage] = []
    skipped = 0
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                record = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
            if not isinstance(record, dict):
                skipped += 1
                continue
            if record.get("type") == "chat" and header is None:
                header = record
            elif record.get("type") == "message" and isinstance(record.get("content"), str):
                role = record.get("role")
                if role not in ("user", "assistant"):
                    skipped += 1
                    continue
                extra = {k: v for k, v in record.items() if k not in ("v", "type", "ts", "role", "content")}
                messages.append(ChatMessage(str(role), record["content"], str(record.get("ts", "")), extra))
            else:
                skipped += 1
    if header is None:
        raise ValueError(f"{path} is not a saved chat (no header line).")
    choice = ModelChoice(
        model=str(header.get("model", "")),
        label=str(header.get("label") or header.get("model") or ""),
        checkpoint=header.get("checkpoint") if isinstance(header.get("checkpoint"), str) else None,
        adapter=bool(header.get("adapter", True)),
        run_path=header.get("run") if isinstance(header.get("run"), str) else None,
        kind=str(header.get("kind") or ""),
    )
    if choice.run_path is None and path.parent.name == CHATS and (path.parent.parent / "run.json").is_file():
        choice = ModelChoice(
            choice.model,
            choice.label,
            choice.checkpoint,
            choice.adapter,
            str(path.parent.parent),
            choice.kind,
        )
    return SavedChat(
        path, str(header.get("id") or path.stem), choice, str(header.get("created", "")), messages, skipped
    )


def list_chats(root: Path | None = None) -> list[SavedChat]:
    """Every saved conversation (under each run and in the store's own folder), newest first."""
    folders = [run.path / CHATS for run in list_runs(root)]
    folders.append((root.parent if root is not None else runs_dir().parent) / CHATS)
    out = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob("*.jsonl"):
            try:
                out.append(read_chat(path))
            except (OSError, ValueError):
                continue
    out.sort(key=lambda c: (c.updated, c.id), reverse=True)
    return out
