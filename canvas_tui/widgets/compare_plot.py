"""What the Compare screen shows: several runs' loss curves on one plot, and their configs diffed.

:func:`load_curves` reads a run's ``events.jsonl`` and ``run.json`` into a :class:`RunCurves`
(training and validation loss against step, tokens seen and wall time since its first event);
a thread worker calls it. :class:`ComparePlot` overlays the curves (textual-plotext, as
:mod:`canvas_tui.widgets.loss_plot`, whose theme colour lookup and round axis ticks it reuses), each
run in its own theme colour; :class:`Legend` names them in the same colours. :func:`config_diff`
flattens the configs to dotted keys and tells which differ. Text from runs is shown literally.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.content import Content
from textual.widgets import Static
from textual_plotext import PlotextPlot

from canvas_tui.fmt import clean_text, finite
from canvas_tui.viewmodel import thin
from canvas_tui.widgets.loss_plot import MAX_POINTS, round_axes, theme_rgb
from engine.runs.events import Eval, Metric, RunInfo
from engine.runs.reader import EventReader
from engine.runs.store import RunDir, RunStoreError

#: The x axes the plot can use, in the order the key cycles through them.
X_AXES = ("step", "tokens", "time")
#: Theme variables giving each run its colour, in order (a seventh run reuses the first colour).
RUN_COLOURS = ("plot-train", "plot-val", "plot-lr", "plot-throughput", "error", "secondary")
#: Where a config leaves a key out.
ABSENT = "—"


@dataclass
class Points:
    """One curve's points: x by step, tokens and wall time (seconds since the run's first event),
    and y; a point without tokens has NaN there (left out on that axis)."""

    step: array = field(default_factory=lambda: array("d"))
    tokens: array = field(default_factory=lambda: array("d"))
    time: array = field(default_factory=lambda: array("d"))
    y: array = field(default_factory=lambda: array("d"))

    def add(self, step: float, tokens: float | None, time: float | None, y: float) -> None:
        self.step.append(step)
        self.tokens.append(math.nan if tokens is None else tokens)
        self.time.append(math.nan if time is None else time)
        self.y.append(y)

    def __len__(self) -> int:
        return len(self.y)

    def along(self, axis: str) -> tuple[list[float], list[float]]:
        """(xs, ys) on ``axis`` (``step``, ``tokens`` or ``time``), points without that x left out."""
        xs = getattr(self, axis)
        pairs = [(x, y) for x, y in zip(xs, self.y, strict=False) if not math.isnan(x)]
        return [p[0] for p in pairs], [p[1] for p in pairs]


@dataclass
class RunCurves:
    """A run as the comparison shows it."""

    run_id: str
    name: str
    train: Points = field(default_factory=Points)
    val: Points = field(default_factory=Points)
    config: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def load_curves(path: str | Path, cancelled: Callable[[], bool] = lambda: False) -> RunCurves:
    """Read one run for the comparison (from a worker thread: it reads the whole events file)."""
    run = RunDir(Path(path))
    try:
        meta = run.read_meta()
    except RunStoreError as exc:
        return RunCurves(run.id, run.id, error=str(exc))
    curves = RunCurves(run.id, meta.name or run.id, config=dict(meta.config or {}))
    reader = EventReader(run.events_path)
    t0: float | None = None
    tokens: float | None = None
    per_step: float | None = None
    while not cancelled():
        events = reader.read_events(max_bytes=4 << 20)
        if not events:
            break
        for e in events:
            t = finite(e.t)
            if t is not None and t0 is None:
                t0 = t
            elapsed = None if t is None or t0 is None else t - t0
            if isinstance(e, RunInfo):
                per_step = finite(e.tokens_per_step)
                if not curves.config and isinstance(e.config, dict):
                    curves.config = dict(e.config)
            elif isinstance(e, Metric):
                step, loss = finite(e.step), finite(e.loss)
                seen = finite(e.tokens)
                if seen is None and per_step is not None and step is not None:
                    seen = step * per_step
                tokens = seen if seen is not None else tokens
                if step is not None and loss is not None:
                    curves.train.add(step, seen, elapsed, loss)
            elif isinstance(e, Eval):
                step, val = finite(e.step), finite(e.val_loss)
                if step is not None and val is not None:
                    at = step * per_step if per_step is not None else tokens
                    curves.val.add(step, at, elapsed, val)
    return curves


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def show_value(value: Any) -> str:
    """A config value as one line of text: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return clean_text(value)
    try:
        return clean_text(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        return clean_text(repr(value))


def config_diff(configs: list[dict[str, Any]]) -> list[tuple[str, list[str], bool]]:
    """(dotted key, one value per config, whether they differ) for every key of any config, in
    sorted order; a config without the key shows :data:`ABSENT`."""
    flat = [_flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    rows = []
    for key in keys:
        values = [show_value(f[key]) if key in f else ABSENT for f in flat]
        rows.append((key, values, len(set(values)) > 1))
    return rows


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit to show wall time in for a span of ``seconds``: (label, divisor)."""
    if seconds >= 3 * 3600:
        return "h", 3600.0
    if seconds >= 180:
        return "min", 60.0
    return "s", 1.0


class ComparePlot(PlotextPlot):
    """The loss curves of several runs, overlaid: training loss solid, validation as dots."""

    DEFAULT_CSS = """
    ComparePlot { height: 1fr; min-height: 10; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs: list[RunCurves] = []
        self.axis = "step"
        self.drawn: dict[str, tuple[list[float], list[float]]] = {}  # label -> points, for tests
        self.xlabel = ""

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw())

    def set_runs(self, runs: list[RunCurves], axis: str) -> None:
        self.runs, self.axis = runs, axis
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        budget = max(16, min(MAX_POINTS, 2 * max(self.size.width, 40)))
        scale, unit = 1.0, ""
        if self.axis == "time":
            span = max((max(r.train.time, default=0.0) for r in self.runs if len(r.train)), default=0.0)
            unit, scale = time_unit(span if math.isfinite(span) else 0.0)
        self.xlabel = {"step": "step", "tokens": "tokens seen", "time": f"wall time ({unit})"}[self.axis]
        plt.title("loss")
        plt.xlabel(self.xlabel)
        self.drawn = {}
        all_x: list[float] = []
        all_y: list[float] = []
        for i, run in enumerate(self.runs):
            colour = theme_rgb(self.app, RUN_COLOURS[i % len(RUN_COLOURS)])
            for points, label, line in ((run.train, run.name, True), (run.val, f"{run.name} (val)", False)):
                xs, ys = points.along(self.axis)
                if not xs:
                    continue
                xs, ys = thin(xs, ys, budget)
                xs = [x / scale for x in xs]
                if line and len(xs) > 1:
                    plt.plot(xs, ys, marker="braille", color=colour)
                else:  # validation: one dot an evaluation
                    plt.scatter(xs, ys, marker="dot" if line else "•", color=colour)
                self.drawn[label] = (xs, ys)
                all_x.extend((min(xs), max(xs)))
                all_y.extend((min(ys), max(ys)))
        round_axes(plt, all_x, all_y, width=self.size.width, height=self.size.height)
        self.refresh()


class Legend(Static):
    """``━━ name`` in each run's plot colour (the names are text from runs: never markup)."""

    DEFAULT_CSS = """
    Legend { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Content(""), id=id, markup=False)
        self.names: list[str] = []

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.show(self.names))

    def show(self, names: list[str]) -> None:
        self.names = list(names)
        parts: list[Content | tuple[str, str]] = []
        for i, name in enumerate(self.names):
            r, g, b = theme_rgb(self.app, RUN_COLOURS[i % len(RUN_COLOURS)])
            parts += [("━━ ", f"bold rgb({r},{g},{b})"), (clean_text(name), "bold"), ("    ", "")]
        parts.append(("solid: training loss · dots: validation", "$text-muted"))
        self.update(Content.assemble(*parts))

    @property
    def text(self) -> str:
        return str(self.content)
