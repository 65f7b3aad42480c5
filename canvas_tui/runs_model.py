"""The rows of the Runs screen, kept up to date incrementally. No Textual, no torch.

:class:`RunsTracker.scan` lists the run store, derives each run's true status
(:func:`engine.runs.run_status`: a dead process reads ``crashed``) and reads only what each
``events.jsonl`` gained since the previous scan (:mod:`engine.runs.summary`: a long unread
history is skimmed, and the summaries are kept in an index under the cache folder, so no event
file is ever read whole twice). A finished run whose files did not change is not read at all.
It runs in a worker thread; the screen receives finished :class:`RunRow` tuples.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from canvas_tui.fmt import fmt_si
from engine import locations
from engine.runs.meta import RunKind, RunMeta
from engine.runs.notes import NOTES_FILE, read_notes
from engine.runs.store import RunDir, RunStoreError, list_runs

if TYPE_CHECKING:  # imported by the scan (a worker thread), not with the Runs screen's first paint
    from engine.runs.summary import SummaryIndex

__all__ = ["RunFilter", "RunRow", "RunsTracker", "base_label", "index_path"]


@dataclass(frozen=True)
class RunRow:
    id: str
    name: str
    kind: str
    status: str
    message: str
    verified: bool
    pid: int | None
    step: int | None
    total_steps: int | None
    loss: float | None
    last_val: float | None
    best_val: float | None
    spark: tuple[float, ...]
    tokens_per_s: float | None
    created: float | None
    path: str
    params: int | None = None  # the whole model's (run_info)
    trainable_params: int | None = None  # a fine-tune's LoRA adapters
    base: str = ""  # a fine-tune's base, short: the run's name, a folder's name or a Hub id
    quantization: str = ""  # a fine-tune's
    tokens: int | None = None  # tokens seen (the last metric's)
    first_t: float | None = None  # the first event's time (else the creation time)
    last_t: float | None = None  # the latest event's time: the last activity
    tags: tuple[str, ...] = ()  # from notes.json (engine.runs.notes)
    notes: str = ""
    host: str = ""  # where its engine runs (or ran)
    remote: bool = False  # that is another host: the status comes from its heartbeat (and SLURM)

    @property
    def live(self) -> bool:
        from engine.runs.status import LIVE_STATES

        return self.status in LIVE_STATES

    def age(self, now: float) -> float | None:
        return None if self.created is None else max(0.0, now - self.created)

    def activity(self, now: float) -> float | None:
        """Seconds since the run's latest event."""
        return None if self.last_t is None else max(0.0, now - self.last_t)

    def runtime(self, now: float) -> float | None:
        """Wall time from the first event to the latest (to now while the run is live)."""
        if self.first_t is None:
            return None
        end = now if self.live else self.last_t
        return None if end is None else max(0.0, end - self.first_t)

    def matches(self, text: str) -> bool:
        """The filter: ``status:running`` (a prefix of the status; several with commas), ``tag:NAME``
        (a tag, exactly, case-insensitive) and, for the other words, a case-insensitive substring of
        id, name, kind, status, base or a tag. Every term must match."""
        return RunFilter.parse(text).matches(self)

    def model(self) -> str:
        """What the run trains, in a few words: ``5.8M params``; a fine-tune ``LoRA 32.8k on tiny-owt``."""
        if self.kind == RunKind.FINETUNE or self.trainable_params is not None:
            base = f" on {self.base}" if self.base else ""
            return f"LoRA {fmt_si(self.trainable_params)}{base}"
        return "-" if self.params is None else f"{fmt_si(self.params)} params"


@dataclass(frozen=True)
class RunFilter:
    """The Runs screen's filter box, parsed (see :meth:`RunRow.matches`)."""

    statuses: tuple[tuple[str, ...], ...] = ()  # each term: any of these prefixes
    tags: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> RunFilter:
        statuses, tags, words = [], [], []
        for term in text.lower().split():
            key, sep, value = term.partition(":")
            if sep and key == "status":
                options = tuple(v for v in value.split(",") if v)
                if options:
                    statuses.append(options)
            elif sep and key == "tag":
                if value:
                    tags.append(value)
            else:
                words.append(term)
        return cls(tuple(statuses), tuple(tags), tuple(words))

    def matches(self, row: RunRow) -> bool:
        status = row.status.lower()
        if any(not any(status.startswith(opt) for opt in options) for options in self.statuses):
            return False
        tags = {t.lower() for t in row.tags}
        if any(tag not in tags for tag in self.tags):
            return False
        haystack = (row.id, row.name, row.kind, row.status, row.base, *row.tags)
        return all(any(word in s.lower() for s in haystack) for word in self.words)


def _created(meta: RunMeta) -> float | None:
    if not meta.created:
        return None
    try:
        return datetime.fromisoformat(meta.created).timestamp()
    except ValueError:
        return None


class _Seen:
    """What the previous scan saw of one run: the files' identities and the row built from them."""

    __slots__ = ("final", "row", "stamp")

    def __init__(self, stamp: tuple, row: RunRow, final: bool) -> None:
        self.stamp, self.row, self.final = stamp, row, final


def _stamp(run: RunDir) -> tuple:
    """Size, modification time and inode of run.json, events.jsonl and notes.json (None if absent)."""
    out: list[tuple[int, int, int] | None] = []
    for path in (run.run_json, run.events_path, run.path / NOTES_FILE):
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def index_path(root: Path | None) -> Path:
    """Where the summary index of the store at ``root`` is kept: under the cache folder, one file a
    store (a console pointed at another ``CANVAS_HOME`` keeps its own)."""
    import hashlib  # here, not at import: the console's start-up pays only for what it uses

    runs = Path(root) if root is not None else locations.runs_dir()
    key = hashlib.sha256(str(runs.resolve()).encode()).hexdigest()[:16]
    return locations.cache_dir() / "runs-index" / f"{key}.json"


class RunsTracker:
    """Incremental state of every run in the store; thread-safe (one scan at a time).

    Each run's numbers come from an :class:`~engine.runs.summary.EventsSummary` (only new bytes
    are read; a long unread stretch is skimmed), kept in a :class:`~engine.runs.summary.SummaryIndex`
    saved under the cache folder, so the next console starts from where this one stopped. A run in
    a final state whose files did not change since the previous scan is not read at all: its row
    is reused (a ``stat`` of three files)."""

    #: Seconds between two saves of the index while runs keep changing it.
    SAVE_EVERY = 30.0

    def __init__(self, root: Path | None = None, max_bytes: int = 8 << 20, persist: bool = True) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.persist = persist
        self._index: SummaryIndex | None = None
        self._seen: dict[str, _Seen] = {}
        self._saved_at = 0.0
        self._lock = threading.Lock()
        #: Runs read (not reused) by the latest scan: what a test or benchmark checks.
        self.read_last_scan = 0

    def count(self) -> int:
        """How many runs the store holds (a directory listing, nothing read): for "Scanning N runs…"."""
        return len(list_runs(self.root))

    def scan(self, cancelled: Callable[[], bool] = lambda: False) -> list[RunRow]:
        """Rows for every run, newest first."""
        with self._lock:
            runs = list(reversed(list_runs(self.root)))
            if self._index is None:
                if not runs:  # an empty store: nothing to summarise (nor the readers to import)
                    return []
                from engine.runs.summary import SummaryIndex

                self._index = SummaryIndex(index_path(self.root) if self.persist else None)
            rows = []
            live_ids = {run.id for run in runs}
            for gone in set(self._seen) - live_ids:
                del self._seen[gone]
            stamps = {run.id: _stamp(run) for run in runs}
            metas: dict[str, RunMeta] = {}
            for run in runs:
                seen = self._seen.get(run.id)
                if seen is not None and seen.final and seen.stamp == stamps[run.id]:
                    continue  # finished and unchanged: not read again
                try:
                    metas[run.id] = run.read_meta()
                except RunStoreError:
                    continue  # deleted between listing and reading, or being created
            names = {run.id: seen.row.name for run in runs if (seen := self._seen.get(run.id))}
            names.update({run_id: meta.name for run_id, meta in metas.items()})
            self.read_last_scan = 0
            for run in runs:
                if cancelled():
                    break
                if run.id in metas:
                    self.read_last_scan += 1
                    rows.append(self._row(run, metas[run.id], names, stamps[run.id]))
                elif run.id in self._seen:
                    rows.append(self._seen[run.id].row)
            if not cancelled():
                self._index.forget(live_ids)
                self._save()
            return rows

    def _save(self) -> None:
        now = time.monotonic()
        due = not self._saved_at or now - self._saved_at >= self.SAVE_EVERY
        if self._index is not None and due and self._index.save():
            self._saved_at = now

    def flush(self) -> None:
        """Save the index now if it changed (when the console leaves the list)."""
        with self._lock:
            if self._index is not None:
                self._index.save()

    def _row(self, run: RunDir, meta: RunMeta, names: dict[str, str], stamp: tuple) -> RunRow:
        from engine.runs.status import run_status  # with the process probes: not at start-up

        status = run_status(run, meta, tail=0)
        assert self._index is not None
        summary = self._index.get(run.id, run.events_path, self.max_bytes)
        total = meta.total_steps if meta.total_steps is not None else summary.total_steps
        notes = read_notes(run.path)
        row = RunRow(
            id=run.id,
            name=meta.name,
            kind=str(meta.kind),
            status=status.state,
            message=status.message,
            verified=status.verified,
            pid=status.pid,
            step=summary.step,
            total_steps=total,
            loss=summary.loss,
            last_val=summary.last_val,
            best_val=summary.best_val,
            spark=tuple(summary.spark),
            tokens_per_s=summary.tokens_per_s,
            created=_created(meta),
            path=str(run.path),
            params=summary.params,
            trainable_params=summary.trainable_params,
            base=base_label(meta, names) if meta.kind == RunKind.FINETUNE else "",
            quantization=summary.quantization or str(meta.config.get("quantization") or ""),
            tokens=summary.tokens,
            first_t=summary.first_t if summary.first_t is not None else _created(meta),
            last_t=summary.last_t,
            tags=notes.tags,
            notes=notes.text,
            host=status.host or "",
            remote=status.remote,
        )
        # Once the run is final, unchanged files are enough to reuse the row.
        self._seen[run.id] = _Seen(stamp, row, status.is_final)
        return row


def base_label(meta: RunMeta, names: dict[str, str]) -> str:
    """A fine-tune's base in a few characters: the name of one of our runs, a folder's name, a Hub id.

    The config holds the base as preflight pinned it (a run id, an absolute folder or a Hub id).
    """
    base = str(meta.config.get("base") or "").strip()
    if not base:
        return ""
    if base in names:
        return names[base] or base
    if base.startswith(("/", "~", ".")) or "\\" in base:
        return Path(base).name or base
    return base


def now() -> float:
    return time.time()
