"""OpenAssistant message trees: one row per message in, one conversation per tree out.

oasst1 stores every message of a tree as its own row (``message_id``, ``parent_id``, ``role``,
``rank``, review flags); a training conversation is one path through the tree, so rows are
grouped and a thread is chosen instead of converting row by row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from engine.config.errors import ConfigError
from engine.finetune.chat_data.conversation import Located
from engine.finetune.chat_data.formats import OASST_FIELDS, row_field

_OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


def oasst_threads(rows: Iterable[Located], column: str, lang: str, field_name: str) -> Iterator[Located]:
    """One thread per tree: from the root prompt, the best-ranked surviving reply at every level.

    Best-ranked is rank 0 (the lowest rank; unranked replies last), ties broken by message_id.
    Deleted messages and those that failed review are skipped with their subtrees. A thread
    that ends on a prompter message loses it; a tree without any assistant reply gives nothing.
    Trees are kept when their root's ``lang`` matches (``all`` keeps every language; a row
    without a language is kept).
    """
    roots: list[Located] = []
    children: dict[Any, list[Mapping[str, Any]]] = {}
    for where, row in rows:
        for name in (*OASST_FIELDS, column):
            if name not in row:
                row_field(row, name, where, "oasst", field_name)
        if row["role"] not in _OASST_ROLES:
            raise ConfigError(
                field_name,
                f"{where} has role {row['role']!r}; OpenAssistant roles are prompter and assistant. "
                "Fix: correct the role, or pass the right ?format=.",
            )
        if not _usable(row):
            continue
        if row["parent_id"] is None:
            roots.append((where, row))
        else:
            children.setdefault(row["parent_id"], []).append(row)
    for where, root in roots:
        root_lang = root.get("lang")
        if lang != "all" and root_lang is not None and str(root_lang).lower() != lang:
            continue
        thread = [root]
        while replies := children.get(thread[-1]["message_id"]):
            thread.append(min(replies, key=_rank))
        if thread[-1]["role"] == "prompter":
            thread.pop()
        if len(thread) < 2:
            continue
        conv = [{"role": _OASST_ROLES[m["role"]], "content": m[column]} for m in thread]
        yield f"{where} (message tree {root['message_id']})", conv


def _usable(row: Mapping[str, Any]) -> bool:
    return row.get("deleted") is not True and row.get("review_result") is not False


def _rank(row: Mapping[str, Any]) -> tuple[bool, float, str]:
    rank = row.get("rank")
    return (rank is None, rank if rank is not None else 0.0, str(row["message_id"]))
