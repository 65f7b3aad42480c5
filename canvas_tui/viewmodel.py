"""Turns a run's events into what the dashboard draws. No Textual, no torch: unit-testable alone.

A :class:`RunView` ingests event records (dicts from :class:`engine.runs.EventReader`) in file
order and keeps:

- the curves as compact :class:`Series` (training loss, validation loss, learning rate,
  tokens/s, gradient norm), finite values only; non-finite losses are counted, not plotted;
- the latest numbers (last metric, last and best evaluation, run_info, progress, status);
- per-GPU telemetry with a short history (``deque(maxlen=...)``), the system sample, emissions;
- the checkpoint list and the log events.

:func:`thin` bounds what a plot receives (first, last, and each bucket's min and max, so spikes
survive) and :class:`Smoother` applies TensorBoard's debiased EMA incrementally.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from canvas_tui.fmt import finite, num

#: Samples of GPU/system history kept for the panes' sparklines.
TELEMETRY_HISTORY = 120
#: Log events kept in memory (the pane itself also caps its lines).
LOG_EVENTS = 2000
#: Metric points used for the step-rate (ETA) estimate.
RATE_WINDOW = 50


class Series:
    """An append-only x/y series of finite floats in two ``array('d')`` (8 bytes a value)."""

    __slots__ = ("xs", "ys")

    def __init__(self) -> None:
        self.xs = array("d")
        self.ys = array("d")

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)

    def __len__(self) -> int:
        return len(self.xs)

    def last(self) -> tuple[float, float] | None:
        return (self.xs[-1], self.ys[-1]) if self.xs else None


def thin(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most about ``max_points`` points of a series: first, last, each bucket's min and max.

    Uses C-speed ``min``/``max``/``index`` on slices, so thinning 200k points takes milliseconds.
    """
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    buckets = max(1, (max_points - 2) // 2)
    keep = {0, n - 1}
    size = (n - 2) / buckets
    for b in range(buckets):
        lo = 1 + int(b * size)
        hi = 1 + int((b + 1) * size)
        if hi <= lo:
            continue
        chunk = ys[lo:hi]
        keep.add(lo + chunk.index(min(chunk)))
        keep.add(lo + chunk.index(max(chunk)))
    order = sorted(keep)
    return [xs[i] for i in order], [ys[i] for i in order]


class Smoother:
    """TensorBoard's debiased exponential moving average, extended incrementally.

    ``apply(series)`` returns the smoothed ys of the whole series, computing only the points
    added since the last call (recomputing all when the weight or the series changed).
    """

    def __init__(self, weight: float = 0.0) -> None:
        self.weight = weight
        self._source: Series | None = None
        self._out = array("d")
        self._last = 0.0
        self._count = 0

    def apply(self, series: Series, weight: float | None = None) -> Sequence[float]:
        if weight is not None and weight != self.weight:
            self.weight = weight
            self._source = None
        if self.weight <= 0:
            return series.ys
        if series is not self._source or len(series) < len(self._out):
            self._source, self._out, self._last, self._count = series, array("d"), 0.0, 0
        w = self.weight
        for y in series.ys[len(self._out) :]:
            self._last = self._last * w + (1 - w) * y
            self._count += 1
            self._out.append(self._last / (1 - w**self._count))
        return self._out


@dataclass
class GpuState:
    """The latest sample of one GPU and short histories for its sparklines."""

    index: int
    latest: dict[str, Any] = field(default_factory=dict)
    util: deque = field(default_factory=lambda: deque(maxlen=TELEMETRY_HISTORY))
    mem_pct: deque = field(default_factory=lambda: deque(maxlen=TELEMETRY_HISTORY))

    def add(self, record: dict[str, Any]) -> None:
        self.latest = record
        self.util.append(finite(record.get("util")))
        used, total = finite(record.get("mem_used")), finite(record.get("mem_total"))
        self.mem_pct.append(100.0 * used / total if used is not None and total else None)


def gpu_unavailable_reason(record: dict[str, Any]) -> str | None:
    """The reason in a ``gpu`` event that says telemetry is unavailable, else None.

    The sampler writes one such event on machines without a usable GPU: ``index = -1`` with
    ``reason`` (engine/runs/events.py ``Gpu``). ``unavailable``/``available: false`` are accepted too.
    """
    index = record.get("index")
    flag = record.get("unavailable")
    if (isinstance(index, int) and index < 0) or flag or record.get("available") is False:
        for key in ("reason", "message", "unavailable"):
            value = record.get(key)
            if isinstance(value, str) and value.strip():
                return value
        return "GPU telemetry unavailable"
    return None


class RunView:
    """Everything the dashboard shows about one run, built from its events; see module docs."""

    def __init__(self) -> None:
        self.train = Series()
        self.val = Series()
        self.lr = Series()
        self.tps = Series()
        self.grad = Series()
        self.last_metric: dict[str, Any] | None = None
        self.last_eval: dict[str, Any] | None = None
        self.best_val: tuple[int, float] | None = None
        self.nonfinite: list[tuple[Any, str]] = []  # (step, "nan"/"inf") of non-finite losses
        self.run_info: dict[str, Any] | None = None
        self.total_steps: int | None = None
        self.progress: dict[str, Any] | None = None
        self.status: dict[str, Any] | None = None
        self.gpus: dict[int, GpuState] = {}
        self.gpu_unavailable: str | None = None
        self.system: dict[str, Any] | None = None
        self.cpu: deque = deque(maxlen=TELEMETRY_HISTORY)
        self.ram_pct: deque = deque(maxlen=TELEMETRY_HISTORY)
        self.carbon: dict[str, Any] | None = None
        self.checkpoints: list[dict[str, Any]] = []
        self.logs: deque = deque(maxlen=LOG_EVENTS)
        self.events = 0
        self.resolution = "empty"  # "sketch" while a sampled first paint is shown, then "full"
        self._rate: deque = deque(maxlen=RATE_WINDOW)

    # ------------------------------------------------------------------------------- ingest
    def ingest(self, records: Iterable[dict[str, Any]]) -> set[str]:
        """Apply records in file order; returns the set of event types seen (what to redraw)."""
        kinds: set[str] = set()
        for record in records:
            kind = record.get("type")
            handler = _HANDLERS.get(kind)  # type: ignore[arg-type]
            self.events += 1
            if handler is not None:
                handler(self, record)
                kinds.add(kind)  # type: ignore[arg-type]
        if kinds and self.resolution == "empty":
            self.resolution = "full"
        return kinds

    def _metric(self, r: dict[str, Any]) -> None:
        step = r.get("step")
        self.last_metric = r
        x = finite(step)
        if x is None:
            return
        loss = num(r.get("loss"))
        if loss is not None:
            if math.isfinite(loss):
                self.train.append(x, loss)
            else:
                self.nonfinite.append((step, "nan" if loss != loss else "inf"))
        for series, key in ((self.lr, "lr"), (self.tps, "tokens_per_s"), (self.grad, "grad_norm")):
            v = finite(r.get(key))
            if v is not None:
                series.append(x, v)
        t = finite(r.get("t"))
        if t is not None:
            self._rate.append((t, x))

    def _eval(self, r: dict[str, Any]) -> None:
        self.last_eval = r
        x, v = finite(r.get("step")), finite(r.get("val_loss"))
        if x is not None and v is not None:
            self.val.append(x, v)
            if self.best_val is None or v < self.best_val[1]:
                self.best_val = (int(x), v)

    def _run_info(self, r: dict[str, Any]) -> None:
        self.run_info = r
        total = r.get("total_steps")
        if isinstance(total, int) and not isinstance(total, bool):
            self.total_steps = total

    def _gpu(self, r: dict[str, Any]) -> None:
        reason = gpu_unavailable_reason(r)
        if reason is not None:
            self.gpu_unavailable = reason
            return
        index = r.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            return
        self.gpus.setdefault(index, GpuState(index)).add(r)

    def _system(self, r: dict[str, Any]) -> None:
        self.system = r
        self.cpu.append(finite(r.get("cpu_pct")))
        used, total = finite(r.get("ram_used")), finite(r.get("ram_total"))
        self.ram_pct.append(100.0 * used / total if used is not None and total else None)

    def _carbon(self, r: dict[str, Any]) -> None:
        self.carbon = r

    def _checkpoint(self, r: dict[str, Any]) -> None:
        # One row per (path, kind): a rewritten "last" checkpoint replaces its row.
        key = (r.get("path"), r.get("kind"))
        self.checkpoints = [c for c in self.checkpoints if (c.get("path"), c.get("kind")) != key]
        self.checkpoints.append(r)

    def _log(self, r: dict[str, Any]) -> None:
        self.logs.append(r)

    def _status(self, r: dict[str, Any]) -> None:
        self.status = r
        self.logs.append(r)

    def _progress(self, r: dict[str, Any]) -> None:
        self.progress = r

    # ------------------------------------------------------------------------------- derived
    @property
    def step(self) -> int | None:
        step = (self.last_metric or {}).get("step")
        return step if isinstance(step, int) else None

    def step_rate(self) -> float | None:
        """Optimiser steps per second over the last metric events, or None."""
        if len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def eta_seconds(self) -> float | None:
        """Seconds to ``total_steps`` at the recent step rate (None when unknown)."""
        rate, step = self.step_rate(), self.step
        if rate is None or step is None or not self.total_steps:
            return None
        return max(0.0, (self.total_steps - step) / rate)

    def fraction_done(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return max(0.0, min(1.0, self.step / self.total_steps))


_HANDLERS = {
    "metric": RunView._metric,
    "eval": RunView._eval,
    "run_info": RunView._run_info,
    "gpu": RunView._gpu,
    "system": RunView._system,
    "carbon": RunView._carbon,
    "checkpoint": RunView._checkpoint,
    "log": RunView._log,
    "status": RunView._status,
    "progress": RunView._progress,
}


def build_view(records: Iterable[dict[str, Any]], resolution: str = "full") -> RunView:
    view = RunView()
    view.ingest(records)
    view.resolution = resolution
    return view


def wall_clock() -> float:
    return time.time()
