"""Compare runs (W&B / TensorBoard style): the runs marked on the Runs screen, side by side.

Their loss curves are overlaid on one plot, each in its theme colour with a legend; ``x`` switches
the x axis between step, tokens seen and wall time. Below, their configs are diffed side by side:
every key of any run, the keys whose values differ highlighted (``d`` shows only those). A thread
worker reads the runs (whole event files); the screen shows "Reading N runs…" until it is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from canvas_tui import actions
from canvas_tui.fmt import clean_text, clip
from canvas_tui.screens.base import CanvasScreen
from canvas_tui.widgets.compare_plot import X_AXES, ComparePlot, Legend, RunCurves, config_diff, load_curves

#: Longest config value shown in a cell (the rest is cut, with "…").
VALUE_WIDTH = 48


class CurvesLoaded(Message):
    """The marked runs, read by the worker."""

    def __init__(self, runs: list[RunCurves]) -> None:
        super().__init__()
        self.runs = runs


class CompareScreen(CanvasScreen):
    SCOPE = "compare"
    BINDINGS = actions.bindings("compare")
    AUTO_FOCUS = "#compare-config"
    DEFAULT_CSS = """
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen #compare-plot { height: 3fr; min-height: 10; border: round $panel-lighten-2; }
    CompareScreen #compare-config { height: 2fr; min-height: 6; border: round $panel-lighten-2;
                                    border-title-color: $text-accent; background: $background; }
    CompareScreen #compare-status { height: auto; padding: 0 1; color: $text-muted; }
    /* Light themes: $panel-lighten-2 is white there (white on white); as the dashboard's panes. */
    CompareScreen:light #compare-plot, CompareScreen:light #compare-config { border: round $panel-darken-3; }
    """

    def __init__(self, run_paths: Sequence[str | Path]) -> None:
        super().__init__()
        self.run_paths = [Path(p) for p in run_paths]
        self.runs: list[RunCurves] = []
        self.axis = X_AXES[0]
        self.only_differences = False
        self.loaded = False
        self.diff: list[tuple[str, list[str], bool]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="compare-body"):
            yield Static(Content(f"Reading {len(self.run_paths)} runs…"), id="compare-status", markup=False)
            yield Legend(id="compare-legend")
            yield ComparePlot(id="compare-plot")
            yield DataTable(id="compare-config", cursor_type="row", zebra_stripes=True, show_row_labels=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Compare · {len(self.run_paths)} runs"
        self.query_one("#compare-config", DataTable).border_title = "Config"
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._show_config())
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-load")
    def _load(self) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        runs = [load_curves(p, lambda: worker.is_cancelled) for p in self.run_paths]
        if not worker.is_cancelled:
            self.post_message(CurvesLoaded(runs))

    @on(CurvesLoaded)
    def _on_loaded(self, message: CurvesLoaded) -> None:
        self.runs = message.runs
        self.loaded = True
        self.diff = config_diff([r.config for r in self.runs])
        errors = [f"{r.name}: {r.error}" for r in self.runs if r.error]
        status = self.query_one("#compare-status", Static)
        status.update(Content(" · ".join(errors)) if errors else Content(""))
        status.display = bool(errors)
        self.query_one(Legend).show([r.name for r in self.runs])
        self._show_plot()
        self._show_config()

    # ------------------------------------------------------------------------ drawing
    def _show_plot(self) -> None:
        self.query_one(ComparePlot).set_runs(self.runs, self.axis)

    def _show_config(self) -> None:
        if not self.loaded:
            return
        table = self.query_one("#compare-config", DataTable)
        warning = self.app.theme_variables.get("warning", "")
        differ = f"bold {warning}" if warning.startswith("#") else "bold"
        rows = [row for row in self.diff if row[2] or not self.only_differences]
        with self.app.batch_update():
            table.clear(columns=True)
            table.add_column("key", key="key")
            for i, run in enumerate(self.runs):
                table.add_column(Text(clip(clean_text(run.name), 24)), key=f"run-{i}")
            for key, values, differs in rows:
                style = differ if differs else ""
                cells = [Text(clip(v, VALUE_WIDTH), style=style) for v in values]
                table.add_row(Text(key, style=style), *cells, key=key)
        count = sum(differs for _, _, differs in self.diff)
        shown = "only the keys that differ" if self.only_differences else "differing keys highlighted"
        table.border_title = f"Config · {count} of {len(self.diff)} keys differ · {shown}"
        table.border_subtitle = "d: " + ("all keys" if self.only_differences else "only differences")

    # ------------------------------------------------------------------------ actions
    def action_cycle_x_axis(self) -> None:
        self.axis = X_AXES[(X_AXES.index(self.axis) + 1) % len(X_AXES)]
        self._show_plot()
        self.notify(f"x axis: {self.query_one(ComparePlot).xlabel}", timeout=1.5)

    def action_toggle_differences(self) -> None:
        self.only_differences = not self.only_differences
        self._show_config()

    def action_back(self) -> None:
        self.app.pop_screen()
