"""A run's notes and tags, written by people (the console's notes editor). Torch-free.

They live in ``<run>/notes.json`` (``{"notes": "...", "tags": ["baseline", ...]}``), a file of their
own: ``run.json`` belongs to the engine, which rewrites it while the run lives, so a note kept
there could be lost between its read and its write. ``notes.json`` is written only here,
atomically (a temporary file in the run directory, then a rename) and owner-only; the run
directory must be a real directory (never a link). Reading is lenient: a missing, unreadable or
damaged file reads as no notes and no tags, so a hand-edited file never takes a list down.

A tag is a short word (:data:`TAG_PATTERN`: letters, digits, ``.``, ``_``, ``+``, ``-``; at most
:data:`MAX_TAG` characters), compared case-insensitively; a run has at most :data:`MAX_TAGS`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.runs.store import open_nofollow, require_real_dir, write_json_atomic

NOTES_FILE = "notes.json"
MAX_TAG = 32
MAX_TAGS = 16
MAX_NOTES = 10_000
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

__all__ = [
    "MAX_NOTES",
    "MAX_TAG",
    "MAX_TAGS",
    "NOTES_FILE",
    "RunNotes",
    "parse_tags",
    "read_notes",
    "write_notes",
]


@dataclass(frozen=True)
class RunNotes:
    text: str = ""
    tags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"notes": self.text, "tags": list(self.tags)}


def _tag_error(tag: str) -> str | None:
    if len(tag) > MAX_TAG:
        return f"tag {tag!r} is {len(tag)} characters long; keep it to {MAX_TAG}."
    if not TAG_PATTERN.match(tag):
        return (
            f"tag {tag!r} has a character a tag cannot hold; use letters, digits and . _ + - "
            "(starting with a letter or digit), and separate tags with commas or spaces."
        )
    return None


def parse_tags(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Tags from ``"baseline, lr-sweep #fast"`` (commas or spaces between them, a leading ``#``
    dropped, repeats removed case-insensitively, order kept); ValueError naming the bad tag."""
    words = text.replace(",", " ").split() if isinstance(text, str) else [str(t) for t in text]
    tags: list[str] = []
    for word in words:
        tag = word.strip().lstrip("#")
        if not tag:
            continue
        error = _tag_error(tag)
        if error:
            raise ValueError(error)
        if tag.lower() not in {t.lower() for t in tags}:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{len(tags)} tags given; a run keeps at most {MAX_TAGS}.")
    return tuple(tags)


def read_notes(run_path: Path | str) -> RunNotes:
    """The run's notes and tags; empty when there are none or the file cannot be read."""
    path = Path(run_path) / NOTES_FILE
    try:
        fd = open_nofollow(path, 0, what="notes file")
    except Exception:  # missing, a link, unreadable: no notes
        return RunNotes()
    try:
        with open(fd, encoding="utf-8", closefd=True) as fh:
            data = json.loads(fh.read(MAX_NOTES * 4 + 65536))
    except (OSError, ValueError):
        return RunNotes()
    if not isinstance(data, dict):
        return RunNotes()
    text = data.get("notes")
    raw_tags = data.get("tags")
    tags: list[str] = []
    for tag in raw_tags if isinstance(raw_tags, list) else []:
        if isinstance(tag, str) and _tag_error(tag) is None and tag.lower() not in {t.lower() for t in tags}:
            tags.append(tag)
    return RunNotes(text if isinstance(text, str) else "", tuple(tags[:MAX_TAGS]))


def write_notes(run_path: Path | str, text: str, tags: str | list[str] | tuple[str, ...]) -> RunNotes:
    """Replace the run's notes and tags (ValueError naming the problem before anything is written;
    :class:`~engine.runs.errors.RunStoreError` when the run directory is gone or a link)."""
    parsed = parse_tags(tags)
    text = text.strip("\n")
    if len(text) > MAX_NOTES:
        raise ValueError(f"the notes are {len(text):,} characters long; keep them to {MAX_NOTES:,}.")
    run = Path(run_path)
    require_real_dir(run, "run directory")
    notes = RunNotes(text, parsed)
    write_json_atomic(run / NOTES_FILE, notes.as_dict())
    return notes
