"""Curves with real axes (textual-plotext): the loss plot and a one-series metric plot.

Each widget owns its own plotext figure (no global plotext state). Series are thinned to about
``2 x width`` points before plotting (:func:`canvas_tui.viewmodel.thin`), so a 200k-step run costs
the same to draw as a short one; :attr:`plotted_points` records how many went in, which the tests
use to prove the first paint is bounded. Colours come from the theme's ``plot-*`` variables and
follow theme changes.
"""

from __future__ import annotations

import math

from textual.color import Color
from textual_plotext import PlotextPlot

from canvas_tui.viewmodel import Series, Smoother, thin
from themes import PLOT_DEFAULTS

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


class _CanvasPlot(PlotextPlot):
    DEFAULT_CSS = """
    _CanvasPlot { height: 1fr; min-height: 8; }
    """

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw())

    def _budget(self) -> int:
        return max(16, min(MAX_POINTS, 2 * max(self.size.width, 40)))

    def redraw(self) -> None:  # pragma: no cover - overridden
        self.refresh()


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
        if len(self.train):
            xs, ys = thin(self.train.xs, self.train.ys, budget)
            if self.log_y:
                xs, ys = _positive(xs, ys)
            if self.smoothing > 0:
                sx, sy = thin(self.train.xs, self._smoother.apply(self.train, self.smoothing), budget)
                if self.log_y:
                    sx, sy = _positive(sx, sy)
                if sx:
                    plt.plot(
                        sx,
                        sy,
                        marker="braille",
                        color=theme_rgb(self.app, "plot-train"),
                        label="train (smoothed)",
                    )
                    points += len(sx)
            elif xs:
                plt.plot(xs, ys, marker="braille", color=theme_rgb(self.app, "plot-train"), label="train")
            points += len(xs) if self.smoothing <= 0 else 0
        if len(self.val):
            vx, vy = thin(self.val.xs, self.val.ys, budget)
            if self.log_y:
                vx, vy = _positive(vx, vy)
            if vx:
                plt.plot(
                    vx,
                    vy,
                    marker="dot" if len(vx) > 1 else "o",
                    color=theme_rgb(self.app, "plot-val"),
                    label="validation",
                )
                points += len(vx)
        self.plotted_points = points
        self.refresh()


def _positive(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if y > 0 and math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class MetricPlot(_CanvasPlot):
    """One series against step (learning rate, tokens/s)."""

    def __init__(
        self, title: str, color_var: str, *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.color_var = color_var
        self.series: Series = Series()
        self.plotted_points = 0

    def set_data(self, series: Series) -> None:
        self.series = series
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        self.plotted_points = 0
        if len(self.series):
            xs, ys = thin(self.series.xs, self.series.ys, self._budget())
            plt.plot(xs, ys, marker="braille", color=theme_rgb(self.app, self.color_var))
            self.plotted_points = len(xs)
        self.refresh()
