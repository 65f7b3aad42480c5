"""Curves with real axes (textual-plotext): the loss plot and a one-series metric plot.

Each widget owns its own plotext figure (no global plotext state). Series are thinned to about
``2 x width`` points before plotting (:func:`canvas_tui.viewmodel.thin`), so a 200k-step run costs
the same to draw as a short one; :attr:`plotted_points` records how many went in, which the tests
use to prove the first paint is bounded. Colours come from the theme's ``plot-*`` variables and
follow theme changes.

With smoothing on, the raw training loss is still drawn, faintly (the train colour blended into
the background), under the smoothed line: spikes stay visible. Axis ticks are round numbers
(:mod:`canvas_tui.widgets.ticks`: ``5k, 10k``, ``0.001``), never plotext's ``5007.5``, and a step
axis never shows negative steps. :attr:`series` names what was drawn (for tests).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from textual.color import Color
from textual_plotext import PlotextPlot

from canvas_tui.viewmodel import Series, Smoother, thin
from canvas_tui.widgets.ticks import log_ticks, nice_ticks, tick_labels
from themes import PLOT_DEFAULTS

#: Seconds between two redraws of a side plot's data on a live run.
SIDE_REDRAW_S = 5.0
#: Never hand plotext more than this many points for one series.
MAX_POINTS = 400


def theme_rgb(app, variable: str) -> tuple[int, int, int]:
    """RGB of a theme variable (our ``plot-*`` tokens, falling back to the theme's accents)."""
    values = app.theme_variables
    raw = values.get(variable) or values.get(PLOT_DEFAULTS.get(variable, ""), "") or "#888888"
    try:
        color = Color.parse(raw)
    except Exception:
        color = Color.parse("#888888")
    return (color.r, color.g, color.b)


def faint(app, variable: str, weight: float = 0.35) -> tuple[int, int, int]:
    """A theme colour blended into the plot's background (the surface): for the raw loss."""
    r, g, b = theme_rgb(app, variable)
    try:
        bg = Color.parse(app.theme_variables.get("surface") or "#000000")
    except Exception:
        bg = Color.parse("#000000")
    return (
        round(bg.r + (r - bg.r) * weight),
        round(bg.g + (g - bg.g) * weight),
        round(bg.b + (b - bg.b) * weight),
    )


def round_axes(
    plt, xs: list[float], ys: list[float], *, width: int, height: int, log_y: bool = False
) -> tuple[list[float], list[float]]:
    """Round ticks on both axes for data spanning ``xs``/``ys``; returns (xticks, yticks).

    The x range is the data's own (steps start at the first step, so no negative ticks); a single
    point is widened so plotext does not invent a range around it.
    """
    if not xs or not ys:
        return [], []
    xlo, xhi = min(xs), max(xs)
    if xhi == xlo:
        xlo, xhi = max(0.0, xlo - 1), xhi + 1
    plt.xlim(xlo, xhi)
    xticks = nice_ticks(xlo, xhi, max(2, min(8, width // 10)))
    plt.xticks(xticks, tick_labels(xticks))
    ylo, yhi = min(ys), max(ys)
    count = max(2, min(6, height // 3))
    if log_y:
        yticks = log_ticks(ylo, yhi, count)
    else:
        if yhi == ylo:
            pad = abs(ylo) * 0.1 or 1.0
            ylo, yhi = ylo - pad, yhi + pad
            plt.ylim(ylo, yhi)
        yticks = nice_ticks(ylo, yhi, count)
    if yticks:
        plt.yticks(yticks, tick_labels(yticks))
    return xticks, yticks


class _CanvasPlot(PlotextPlot):
    DEFAULT_CSS = """
    _CanvasPlot { height: 1fr; min-height: 8; }
    """

    _generation = 0  # bumped by each redraw: what the cached render is of
    _render_key: tuple | None = None
    _render_cache: Any = None

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw())

    def render(self) -> Any:
        """plotext's figure as text, built again only after a redraw or a resize.

        Textual renders a widget again whenever the screen is laid out (a header update, a
        resize); building a plotext figure costs milliseconds a time, so an unchanged plot reuses
        its last build.
        """
        if self.size != self._drawn_size:  # ticks depend on the size: drawn again for this one
            self._in_render = True
            try:
                self.redraw()
            finally:
                self._in_render = False
        key = (self._generation, self.size, self.app.theme)
        if key != self._render_key:
            self._render_cache, self._render_key = super().render(), key
        return self._render_cache

    _drawn_size: Any = None
    _in_render = False

    def _changed(self) -> None:
        self._generation += 1
        self._drawn_size = self.size
        if not self._in_render:
            self.refresh()

    #: Seconds between two data redraws (0: every :meth:`set_data`); see :meth:`_redraw_soon`.
    min_interval = 0.0
    _drawn_at = 0.0
    _late: Any = None

    def _redraw_soon(self) -> None:
        """Redraw now, or once ``min_interval`` after the last data redraw (one pending at most)."""
        wait = self._drawn_at + self.min_interval - time.monotonic()
        if wait <= 0 or not self.is_mounted:
            if self._late is not None:
                self._late.stop()
                self._late = None
            self._drawn_at = time.monotonic()
            self.redraw()
        elif self._late is None:

            def late() -> None:
                self._late = None
                self._drawn_at = time.monotonic()
                self.redraw()

            self._late = self.set_timer(wait, late)

    def _budget(self) -> int:
        return max(16, min(MAX_POINTS, 2 * max(self.size.width, 40)))

    def redraw(self) -> None:  # pragma: no cover - overridden
        self._changed()


class LossPlot(_CanvasPlot):
    """Training loss (optionally EMA-smoothed, raw shown faintly) and validation loss."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.train: Series = Series()
        self.val: Series = Series()
        self.log_y = False
        self.smoothing = 0.6
        self.resolution = "empty"
        self.plotted_points = 0
        self.series: list[str] = []  # labels of what the last redraw drew, in drawing order
        self.data: dict[str, tuple[list[float], list[float]]] = {}  # label -> the points drawn
        self.ticks: tuple[list[float], list[float]] = ([], [])
        self._smoother = Smoother()

    def set_data(self, train: Series, val: Series, resolution: str) -> None:
        self.train, self.val, self.resolution = train, val, resolution
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        budget = self._budget()
        points = 0
        title = "loss"
        if self.resolution == "sketch":
            title += " (sampled, loading full history…)"
        if self.smoothing:
            title += f" · smoothing {self.smoothing:g}"
        if self.log_y:
            title += " · log"
        plt.title(title)
        plt.xlabel("step")
        if self.log_y:
            plt.yscale("log")
        drawn: list[str] = []
        self.data = {}
        all_x: list[float] = []
        all_y: list[float] = []

        def draw(xs: list[float], ys: list[float], label: str, **kw) -> None:
            nonlocal points
            if self.log_y:
                xs, ys = _positive(xs, ys)
            if not xs:
                return
            plt.plot(xs, ys, label=label, **kw)
            drawn.append(label)
            self.data[label] = (xs, ys)
            all_x.extend((xs[0], xs[-1]))
            all_y.extend((min(ys), max(ys)))
            points += len(xs)

        if len(self.train):
            xs, ys = thin(self.train.xs, self.train.ys, budget)
            if self.smoothing > 0:
                # Raw first, faintly, so the smoothed line is drawn over it (spikes stay visible).
                draw(xs, ys, "train (raw)", marker="braille", color=faint(self.app, "plot-train"))
                sx, sy = thin(self.train.xs, self._smoother.apply(self.train, self.smoothing), budget)
                draw(sx, sy, "train (smoothed)", marker="braille", color=theme_rgb(self.app, "plot-train"))
            else:
                draw(xs, ys, "train", marker="braille", color=theme_rgb(self.app, "plot-train"))
        if len(self.val):
            vx, vy = thin(self.val.xs, self.val.ys, budget)
            draw(
                vx,
                vy,
                "validation",
                marker="dot" if len(vx) > 1 else "o",
                color=theme_rgb(self.app, "plot-val"),
            )
        self.series = drawn
        self.ticks = round_axes(
            plt, all_x, all_y, width=self.size.width, height=self.size.height, log_y=self.log_y
        )
        self.plotted_points = points
        self._changed()


def _positive(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if y > 0 and math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class MetricPlot(_CanvasPlot):
    """One series against step (learning rate, tokens/s).

    A side plot: on a live run it redraws its data at most every :data:`SIDE_REDRAW_S` seconds
    (the loss plot is the one people watch; each plotext build costs milliseconds).
    """

    min_interval = SIDE_REDRAW_S

    def __init__(
        self, title: str, color_var: str, *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.color_var = color_var
        self.series: Series = Series()
        self.plotted_points = 0
        self.ticks: tuple[list[float], list[float]] = ([], [])

    def set_data(self, series: Series) -> None:
        self.series = series
        self._redraw_soon()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        self.plotted_points = 0
        self.ticks = ([], [])
        if len(self.series):
            xs, ys = thin(self.series.xs, self.series.ys, self._budget())
            plt.plot(xs, ys, marker="braille", color=theme_rgb(self.app, self.color_var))
            self.plotted_points = len(xs)
            self.ticks = round_axes(plt, xs, ys, width=self.size.width, height=self.size.height)
        self._changed()


@dataclass(frozen=True)
class PickedMetric:
    """One choice of the metric picker: a curve of the run and how to show its values."""

    key: str
    title: str
    unit: str = ""
    scale: float = 1.0


#: What the picker cycles through (``p`` on the dashboard), in order; learning rate first.
PICKABLE: tuple[PickedMetric, ...] = (
    PickedMetric("lr", "learning rate"),
    PickedMetric("grad_norm", "grad norm"),
    PickedMetric("mfu", "MFU", "%", 100.0),
    PickedMetric("step_time", "step time", "s"),
    PickedMetric("peak_mem", "peak memory", "GiB", 1 / 2**30),
    PickedMetric("tokens", "tokens seen"),
    PickedMetric("elapsed", "elapsed", "min", 1 / 60),
)
PICKABLE_BY_KEY = {m.key: m for m in PICKABLE}


def picked_series(view, key: str) -> Series:
    """The curve of ``key`` in a :class:`canvas_tui.viewmodel.RunView`."""
    if key == "lr":
        return view.lr
    if key == "grad_norm":
        return view.grad
    return view.extra.get(key) or Series()


class PickedMetricPlot(MetricPlot):
    """The side plot whose metric the user picks; says "no <metric> in this run" when it is absent."""

    def __init__(self, metric: str = "lr", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(PICKABLE_BY_KEY[metric].title, "plot-lr", id=id, classes=classes)
        self.metric = metric
        self.values: list[float] = []  # the (scaled) values of the last redraw, for tests

    def pick(self, metric: str, view) -> None:
        self.metric = metric
        self.series = picked_series(view, metric)
        self._drawn_at = time.monotonic()
        self.redraw()  # at once: the user asked for it

    def set_view(self, view) -> None:
        self.series = picked_series(view, self.metric)
        self._redraw_soon()

    def redraw(self) -> None:
        spec = PICKABLE_BY_KEY[self.metric]
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        index = PICKABLE.index(spec) + 1
        unit = f" ({spec.unit})" if spec.unit else ""
        self.plotted_points = 0
        self.ticks = ([], [])
        self.values = []
        if not len(self.series):
            plt.title(f"{spec.title}: not in this run · p: next ({index}/{len(PICKABLE)})")
            self._changed()
            return
        plt.title(f"{spec.title}{unit} · p: next ({index}/{len(PICKABLE)})")
        xs, ys = thin(self.series.xs, self.series.ys, self._budget())
        if spec.scale != 1.0:
            ys = [y * spec.scale for y in ys]
        plt.plot(xs, ys, marker="braille", color=theme_rgb(self.app, self.color_var))
        self.plotted_points = len(xs)
        self.values = ys
        self.ticks = round_axes(plt, xs, ys, width=self.size.width, height=self.size.height)
        self._changed()
