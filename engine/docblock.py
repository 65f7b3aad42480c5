"""README blocks generated from code (the run schema, the worker protocol): one reader and writer.

A block sits between a begin and an end marker comment; ``--check`` compares it with what the code
renders, ``--write`` replaces it, so the README cannot drift from the modules it documents.
"""

from __future__ import annotations

from pathlib import Path


def split_block(text: str, path: Path, begin: str, end: str) -> tuple[str, str, str]:
    """``text`` as (before, block, after) around the markers; ValueError when they are missing."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{path} has no {begin} ... {end} block")
    stop += len(end)
    return text[:start], text[start:stop], text[stop:]


def read_block(path: Path, begin: str, end: str) -> str:
    """The block as the file holds it now."""
    return split_block(path.read_text(encoding="utf-8"), path, begin, end)[1]


def write_block(path: Path, begin: str, end: str, fresh: str) -> bool:
    """Replace the file's block with ``fresh``; True when that changed the file."""
    before, block, after = split_block(path.read_text(encoding="utf-8"), path, begin, end)
    if block == fresh:
        return False
    path.write_text(before + fresh + after, encoding="utf-8")
    return True
