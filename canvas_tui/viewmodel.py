"""Turns a run's events into what the dashboard draws. No Textual, no torch: unit-testable alone.

A :class:`RunView` ingests typed events (:meth:`engine.runs.EventReader.read_events`; record
dicts are decoded on the way in) in file order and keeps, as the typed events themselves:

- the curves as compact :class:`Series` (training loss, validation loss, learning rate,
  tokens/s, gradient norm), finite values only; non-finite losses are counted, not plotted;
- the latest numbers (last metric, last and best evaluation, run_info, progress, status);
- per-GPU telemetry with a short history (``deque(maxlen=...)``), the system sample, emissions;
- the checkpoint list and the log events;
- the latest ``sample`` events (what the model wrote during training), the last steps' worth.

:func:`thin` bounds what a plot receives (first, last, and each bucket's min and max, so spikes
survive) and :class:`Smoother` applies TensorBoard's debiased EMA incrementally.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from canvas_tui.fmt import finite
from engine.runs.events import (
    Carbon,
    Checkpoint,
    Eval,
    Event,
    Gpu,
    Log,
    Metric,
    Progress,
    RunInfo,
    Sample,
    Status,
    System,
    decode_any,
)

#: Samples of GPU/system history kept for the panes' sparklines.
TELEMETRY_HISTORY = 120
#: Log events kept in memory (the pane itself also caps its lines).
LOG_EVENTS = 2000
#: Sample events kept in memory (the dashboard shows the latest step's).
SAMPLE_EVENTS = 256
#: Metric fields kept as curves for the dashboard's metric picker, then the elapsed time.
EXTRA_METRICS = ("step_time", "tokens", "peak_mem", "mfu", "elapsed")
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
    latest: Gpu | None = None
    util: deque = field(default_factory=lambda: deque(maxlen=TELEMETRY_HISTORY))
    mem_pct: deque = field(default_factory=lambda: deque(maxlen=TELEMETRY_HISTORY))

    def add(self, sample: Gpu) -> None:
        self.latest = sample
        self.util.append(finite(sample.util))
        used, total = finite(sample.mem_used), finite(sample.mem_total)
        self.mem_pct.append(100.0 * used / total if used is not None and total else None)


def gpu_unavailable_reason(sample: Gpu) -> str | None:
    """The reason in a ``gpu`` event that says telemetry is unavailable, else None.

    The sampler writes one such event on machines without a usable GPU: ``index = -1`` (or
    ``unavailable: true``) with ``reason`` (engine/runs/events.py ``Gpu``).
    """
    if (sample.index is not None and sample.index < 0) or sample.unavailable:
        reason = sample.reason
        return reason if reason and reason.strip() else "GPU telemetry unavailable"
    return None


class RunView:
    """Everything the dashboard shows about one run, built from its events; see module docs."""

    def __init__(self) -> None:
        self.train = Series()
        self.val = Series()
        self.lr = Series()
        self.tps = Series()
        self.grad = Series()
        # The metric picker's other curves (step time, tokens seen, peak memory, MFU, elapsed time).
        self.extra: dict[str, Series] = {name: Series() for name in EXTRA_METRICS}
        self._first_t: float | None = None
        self.last_metric: Metric | None = None
        self.last_eval: Eval | None = None
        self.best_val: tuple[int, float] | None = None
        self.nonfinite: list[tuple[Any, str]] = []  # (step, "nan"/"inf") of non-finite losses
        self.run_info: RunInfo | None = None
        self.total_steps: int | None = None
        self.progress: Progress | None = None
        self.status: Status | None = None
        self.gpus: dict[int, GpuState] = {}
        self.gpu_unavailable: str | None = None
        self.system: System | None = None
        self.cpu: deque = deque(maxlen=TELEMETRY_HISTORY)
        self.ram_pct: deque = deque(maxlen=TELEMETRY_HISTORY)
        self.carbon: Carbon | None = None
        self.checkpoints: list[Checkpoint] = []
        self.logs: deque[Log | Status] = deque(maxlen=LOG_EVENTS)
        self.samples: deque[Sample] = deque(maxlen=SAMPLE_EVENTS)
        self.events = 0
        #: The highest step any event carried (metric, eval, checkpoint, sample): the step counter.
        self.latest_step: int | None = None
        #: When the newest telemetry sample (gpu, system, carbon) was written (unix seconds).
        self.telemetry_t: float | None = None
        self.resolution = "empty"  # "sketch" while a sampled first paint is shown, then "full"
        self._rate: deque = deque(maxlen=RATE_WINDOW)

    # ------------------------------------------------------------------------------- ingest
    def ingest(self, events: Iterable[Event | dict[str, Any]]) -> set[str]:
        """Apply events in file order; returns the set of event types seen (what to redraw).

        Record dicts are decoded (:func:`engine.runs.events.decode_any`); unknown types count in
        ``events`` and change nothing else.
        """
        kinds: set[str] = set()
        for event in events:
            if isinstance(event, dict):
                event = decode_any(event)
            handler = _HANDLERS.get(type(event))
            self.events += 1
            if handler is not None:
                handler(self, event)
                kinds.add(event.TYPE)
        if kinds and self.resolution == "empty":
            self.resolution = "full"
        return kinds

    def _saw_step(self, step: Any) -> None:
        """Advance the step counter to ``step`` (any event that carries one); once training steps
        are counted, a phase without steps (data, loading the base) is over."""
        if isinstance(step, int) and not isinstance(step, bool):
            if self.latest_step is None or step > self.latest_step:
                self.latest_step = step
            if self.progress is not None and step > 0:
                self.progress = None

    def _saw_telemetry(self, t: Any) -> None:
        v = finite(t)
        if v is not None and (self.telemetry_t is None or v > self.telemetry_t):
            self.telemetry_t = v

    def _metric(self, m: Metric) -> None:
        self.last_metric = m
        self._saw_step(m.step)
        x = finite(m.step)
        if x is None:
            return
        if m.loss is not None:
            if math.isfinite(m.loss):
                self.train.append(x, m.loss)
            else:
                self.nonfinite.append((m.step, "nan" if m.loss != m.loss else "inf"))
        for series, value in ((self.lr, m.lr), (self.tps, m.tokens_per_s), (self.grad, m.grad_norm)):
            v = finite(value)
            if v is not None:
                series.append(x, v)
        for name in EXTRA_METRICS[:-1]:
            v = finite(getattr(m, name))
            if v is not None:
                self.extra[name].append(x, v)
        t = finite(m.t)
        if t is not None:
            self._rate.append((t, x))
            if self._first_t is None:
                self._first_t = t
            self.extra["elapsed"].append(x, t - self._first_t)

    def _eval(self, e: Eval) -> None:
        self.last_eval = e
        self._saw_step(e.step)
        x, v = finite(e.step), finite(e.val_loss)
        if x is not None and v is not None:
            self.val.append(x, v)
            if self.best_val is None or v < self.best_val[1]:
                self.best_val = (int(x), v)

    def _run_info(self, r: RunInfo) -> None:
        self.run_info = r
        if isinstance(r.total_steps, int):
            self.total_steps = r.total_steps

    def _gpu(self, g: Gpu) -> None:
        reason = gpu_unavailable_reason(g)
        if reason is None:
            self._saw_telemetry(g.t)
        if reason is not None:
            self.gpu_unavailable = reason
            return
        if not isinstance(g.index, int):
            return
        self.gpus.setdefault(g.index, GpuState(g.index)).add(g)

    def _system(self, s: System) -> None:
        self.system = s
        self._saw_telemetry(s.t)
        self.cpu.append(finite(s.cpu_pct))
        used, total = finite(s.ram_used), finite(s.ram_total)
        self.ram_pct.append(100.0 * used / total if used is not None and total else None)

    def _carbon(self, c: Carbon) -> None:
        self.carbon = c
        self._saw_telemetry(c.t)

    def _checkpoint(self, c: Checkpoint) -> None:
        # One row per (path, kind): a rewritten "last" checkpoint replaces its row.
        self._saw_step(c.step)
        key = (c.path, c.kind)
        self.checkpoints = [k for k in self.checkpoints if (k.path, k.kind) != key]
        self.checkpoints.append(c)

    def _log(self, e: Log) -> None:
        self.logs.append(e)

    def _status(self, s: Status) -> None:
        self.status = s
        self.logs.append(s)

    def _progress(self, p: Progress) -> None:
        # A phase that says it ended ("data: done", "loading the base" 1/1) leaves no line behind.
        self.progress = None if phase_ended(p) else p

    def _sample(self, s: Sample) -> None:
        self._saw_step(s.step)
        self.samples.append(s)

    # ------------------------------------------------------------------------------- derived
    @property
    def step(self) -> int | None:
        """The step the run is at: the highest step of any event (not only metrics)."""
        return self.latest_step

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

    def latest_samples(self) -> list[Sample]:
        """The samples of the latest step that has any, in prompt order (empty when none)."""
        if not self.samples:
            return []
        step = self.samples[-1].step
        latest = [s for s in self.samples if s.step == step]
        return sorted(latest, key=lambda s: s.index if isinstance(s.index, int) else 0)

    def fraction_done(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return max(0.0, min(1.0, self.step / self.total_steps))


def phase_ended(p: Progress) -> bool:
    """A progress event that closes its phase: the data stage ``done``, or all of a known total."""
    phase = (p.phase or "").strip().lower()
    if phase == "done" or phase.endswith(": done"):
        return True
    done, total = finite(p.done), finite(p.total)
    return done is not None and total is not None and total > 0 and done >= total


_HANDLERS: dict[type, Callable[[RunView, Any], None]] = {
    Metric: RunView._metric,
    Eval: RunView._eval,
    RunInfo: RunView._run_info,
    Gpu: RunView._gpu,
    System: RunView._system,
    Carbon: RunView._carbon,
    Checkpoint: RunView._checkpoint,
    Log: RunView._log,
    Status: RunView._status,
    Progress: RunView._progress,
    Sample: RunView._sample,
}


def build_view(events: Iterable[Event | dict[str, Any]], resolution: str = "full") -> RunView:
    view = RunView()
    view.ingest(events)
    view.resolution = resolution
    return view


def wall_clock() -> float:
    return time.time()
