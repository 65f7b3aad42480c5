"""The rows of the Runs screen, kept up to date incrementally. No Textual, no torch.

:class:`RunsTracker.scan` lists the run store, derives each run's true status
(:func:`engine.runs.run_status`: a dead process reads ``crashed``) and reads only what each
``events.jsonl`` gained since the previous scan (an :class:`EventReader` per run, at most
``max_bytes`` a scan, so a huge history fills in over a few scans instead of stalling one).
It runs in a worker thread; the screen receives finished :class:`RunRow` tuples.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from canvas_tui.fmt import finite, fmt_si
from engine.runs.events import Eval, Metric, RunInfo
from engine.runs.meta import RunKind, RunMeta
from engine.runs.reader import EventReader
from engine.runs.status import run_status
from engine.runs.store import RunDir, RunStoreError, list_runs

#: Loss points kept per run for its sparkline (decimated by 2 whenever it doubles).
SPARK_POINTS = 64


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

    def age(self, now: float) -> float | None:
        return None if self.created is None else max(0.0, now - self.created)

    def matches(self, text: str) -> bool:
        """Case-insensitive substring match on id, name, kind, status and base (the filter)."""
        needle = text.strip().lower()
        return not needle or any(
            needle in s.lower() for s in (self.id, self.name, self.kind, self.status, self.base)
        )

    def model(self) -> str:
        """What the run trains, in a few words: ``5.8M params``; a fine-tune ``LoRA 32.8k on tiny-owt``."""
        if self.kind == RunKind.FINETUNE or self.trainable_params is not None:
            base = f" on {self.base}" if self.base else ""
            return f"LoRA {fmt_si(self.trainable_params)}{base}"
        return "-" if self.params is None else f"{fmt_si(self.params)} params"


class _Acc:
    """What one run's events said so far."""

    def __init__(self, path: Path) -> None:
        self.reader = EventReader(path)
        self.step: int | None = None
        self.loss: float | None = None
        self.tps: float | None = None
        self.last_val: float | None = None
        self.best_val: float | None = None
        self.total: int | None = None
        self.params: int | None = None
        self.trainable: int | None = None
        self.quantization = ""
        self.spark: list[float] = []
        self._stride = 1
        self._seen = 0

    def update(self, max_bytes: int) -> None:
        for event in self.reader.read_events(max_bytes=max_bytes):
            if isinstance(event, Metric):
                if isinstance(event.step, int):
                    self.step = event.step
                self.loss = event.loss
                self.tps = finite(event.tokens_per_s)
                loss = finite(event.loss)
                if loss is not None:
                    if self._seen % self._stride == 0:
                        self.spark.append(loss)
                        if len(self.spark) >= 2 * SPARK_POINTS:
                            self.spark = self.spark[::2]
                            self._stride *= 2
                    self._seen += 1
            elif isinstance(event, Eval):
                v = finite(event.val_loss)
                if v is not None:
                    self.last_val = v
                    self.best_val = v if self.best_val is None else min(self.best_val, v)
            elif isinstance(event, RunInfo):
                if isinstance(event.total_steps, int):
                    self.total = event.total_steps
                if isinstance(event.params, int):
                    self.params = event.params
                if isinstance(event.trainable_params, int):
                    self.trainable = event.trainable_params
                if event.quantization is not None:
                    self.quantization = event.quantization


def _created(meta: RunMeta) -> float | None:
    if not meta.created:
        return None
    try:
        return datetime.fromisoformat(meta.created).timestamp()
    except ValueError:
        return None


class RunsTracker:
    """Incremental state of every run in the store; thread-safe (one scan at a time)."""

    def __init__(self, root: Path | None = None, max_bytes: int = 8 << 20) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._accs: dict[str, _Acc] = {}
        self._lock = threading.Lock()

    def scan(self, cancelled: Callable[[], bool] = lambda: False) -> list[RunRow]:
        """Rows for every run, newest first."""
        with self._lock:
            rows = []
            runs = list(reversed(list_runs(self.root)))
            live_ids = {run.id for run in runs}
            for gone in set(self._accs) - live_ids:
                del self._accs[gone]
            metas: dict[str, RunMeta] = {}
            for run in runs:
                try:
                    metas[run.id] = run.read_meta()
                except RunStoreError:
                    continue  # deleted between listing and reading, or being created
            names = {run_id: meta.name for run_id, meta in metas.items()}
            for run in runs:
                if cancelled():
                    break
                if run.id in metas:
                    rows.append(self._row(run, metas[run.id], names))
            return rows

    def _row(self, run: RunDir, meta: RunMeta, names: dict[str, str]) -> RunRow:
        status = run_status(run, meta, tail=0)
        acc = self._accs.get(run.id)
        if acc is None:
            acc = self._accs[run.id] = _Acc(run.events_path)
        acc.update(self.max_bytes)
        total = meta.total_steps if meta.total_steps is not None else acc.total
        return RunRow(
            id=run.id,
            name=meta.name,
            kind=str(meta.kind),
            status=status.state,
            message=status.message,
            verified=status.verified,
            pid=status.pid,
            step=acc.step,
            total_steps=total,
            loss=acc.loss,
            last_val=acc.last_val,
            best_val=acc.best_val,
            spark=tuple(acc.spark),
            tokens_per_s=acc.tps,
            created=_created(meta),
            path=str(run.path),
            params=acc.params,
            trainable_params=acc.trainable,
            base=base_label(meta, names) if meta.kind == RunKind.FINETUNE else "",
            quantization=acc.quantization or str(meta.config.get("quantization") or ""),
        )


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
