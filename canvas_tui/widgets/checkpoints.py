"""The checkpoint list: one row per checkpoint that exists on disk, newest first.

The rows come from the run's ``checkpoints/`` folder, not from ``checkpoint`` events: a checkpoint
the engine rotated away (``keep_last``) or a user deleted is not listed, and a checkpoint written
while the console was closed is. :func:`scan_checkpoints` reads the folder (a thread worker calls
it, only when the folder changed); the events then give each row its validation loss when the
``best``/``last`` pointer files do not. Tags: ``best`` and ``last`` from the pointers (``last`` is the
newest when the engine wrote none).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable

from canvas_tui.fmt import clean_text, finite, fmt_bytes, fmt_loss
from canvas_tui.viewmodel import RunView
from engine.train.layout import POINTERS, read_pointer

#: ``step-000120`` (a folder of ours), ``step-25.pt`` (a file checkpoint): the step is in the name.
STEP_NAME = re.compile(r"^step-(\d+)(?:\.[A-Za-z0-9]+)?$")


@dataclass(frozen=True)
class OnDisk:
    """One complete checkpoint in ``checkpoints/``: its name, bytes, step (from the name, else
    None), ``tags`` from the pointer files and the validation loss a pointer recorded."""

    name: str
    size: int
    step: int | None = None
    tags: tuple[str, ...] = ()
    val_loss: float | None = None
    mtime: float = 0.0


def _temporary(name: str) -> bool:
    return name.startswith(".") or name.endswith((".tmp", ".partial")) or ".tmp" in name


def _size(path: Path) -> int:
    """Bytes of a checkpoint file, or of every file under a checkpoint folder (links not followed)."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_size
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def checkpoints_signature(checkpoints_dir: Path) -> int | None:
    """Changes whenever a checkpoint or pointer appears, disappears or is replaced (they are all
    renamed into place), so the worker rescans only then: the folder's mtime, None without one."""
    try:
        return os.stat(checkpoints_dir).st_mtime_ns
    except OSError:
        return None


def scan_checkpoints(checkpoints_dir: Path) -> list[OnDisk]:
    """Every complete checkpoint in ``checkpoints_dir`` (temporaries and pointer files left out),
    newest first. Reads only the folder, its pointer files and the sizes; never follows a link."""
    checkpoints_dir = Path(checkpoints_dir)
    try:
        entries = [p for p in checkpoints_dir.iterdir() if not _temporary(p.name) and p.suffix != ".json"]
    except OSError:
        return []
    pointers = {which: read_pointer(checkpoints_dir, which) for which in POINTERS}
    out: list[OnDisk] = []
    for path in entries:
        if path.is_symlink():
            continue
        match = STEP_NAME.match(path.name)
        tags = tuple(w for w, rec in pointers.items() if rec is not None and rec.get("dir") == path.name)
        val = next(
            (finite(rec.get("val_loss")) for rec in pointers.values() if rec and rec.get("dir") == path.name),
            None,
        )
        try:
            mtime = path.lstat().st_mtime
        except OSError:
            continue
        out.append(OnDisk(path.name, _size(path), int(match.group(1)) if match else None, tags, val, mtime))
    out.sort(key=lambda c: (c.step if c.step is not None else -1, c.mtime), reverse=True)
    if out and pointers["last"] is None:  # the engine wrote no pointer: the newest is what resumes
        first = out[0]
        out[0] = OnDisk(
            first.name, first.size, first.step, ("last", *first.tags), first.val_loss, first.mtime
        )
    return out


def rows_for(found: list[OnDisk], view: RunView) -> list[tuple[str, ...]]:
    """The table's cells (tags, step, val loss, size, name) of the checkpoints found, the step and
    validation loss filled in from the run's ``checkpoint`` and ``eval`` events where the folder's
    name and the pointers do not say."""
    by_name: dict[str, tuple[int | None, float | None]] = {}
    for event in view.checkpoints:
        name = Path(str(event.path or "")).name
        by_name[name] = (event.step if isinstance(event.step, int) else None, finite(event.val_loss))
    val_at = dict(zip(view.val.xs, view.val.ys, strict=False))
    rows: list[tuple[str, ...]] = []
    for c in found:
        step, val = c.step, c.val_loss
        event_step, event_val = by_name.get(c.name, (None, None))
        step = step if step is not None else event_step
        if val is None:
            val = (
                event_val
                if event_val is not None
                else (val_at.get(float(step)) if step is not None else None)
            )
        rows.append(
            (
                " ".join(c.tags),
                "-" if step is None else str(step),
                fmt_loss(val) if val is not None else "-",
                fmt_bytes(c.size),
                clean_text(c.name),
            )
        )
    return rows


class CheckpointList(DataTable):
    DEFAULT_CSS = """
    CheckpointList { border: round $panel-lighten-2; border-title-color: $text-accent; height: auto;
                     min-height: 5; max-height: 12; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_row_labels=False)
        self.border_title = "Checkpoints"
        self._shown: list[tuple[str, ...]] | None = None
        self.rows_shown: list[tuple[str, ...]] = []  # the cells as plain text, for tests

    def on_mount(self) -> None:
        self.add_columns("", "step", "val loss", "size", "name")
        self.show([], RunView())

    def show(self, found: list[OnDisk], view: RunView) -> None:
        rows = rows_for(found, view)
        if rows == self._shown:
            return
        self._shown = rows
        self.clear()
        if not rows:
            self.rows_shown = [("", "", "none yet", "", "")]
            self.add_row(Text(""), Text("-"), Text("none yet", style="dim"), Text(""), Text(""))
            return
        self.rows_shown = list(rows)
        for tags, step, val, size, name in rows:
            self.add_row(
                Text(tags, style="bold"),
                Text(step, justify="right"),
                Text(val, justify="right"),
                Text(size, justify="right"),
                Text(name, style="dim"),
            )
