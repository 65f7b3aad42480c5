"""Issue 15, "Compare runs": mark runs with space on the Runs screen, ``v`` opens their loss curves
overlaid (legend, theme colours; x by step, tokens or wall time) and their configs diffed."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from canvas_tui.app import CanvasApp
from canvas_tui.screens.compare import CompareScreen
from canvas_tui.screens.runs import RunsScreen
from canvas_tui.widgets.compare_plot import ComparePlot, Legend
from canvas_tui.widgets.loss_plot import theme_rgb
from tests.console_fixtures import (
    FROZEN_NOW,
    HOSTILE,
    make_run,
    screen_text,
    select,
    snapshot_app,
    training,
    utc,  # noqa: F401 (a fixture)
)
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio

RUN_A = "20261127-100000-000-0000aaaa"
RUN_B = "20261127-110000-000-0000bbbb"
RUN_C = "20261127-113000-000-0000cccc"


@pytest.fixture
def three_runs(utc):  # noqa: F811 (the fixture imported above)
    make_run(
        "tiny-owt",
        run_id=RUN_A,
        created=FROZEN_NOW - 7200,
        total_steps=100,
        config={"preset": "tiny", "lr": 0.002, "batch_size": 8, "model": {"dim": 64, "n_layers": 2}},
        write=training(100, t0=FROZEN_NOW - 7000, gpus=0, telemetry_every=0),
    )
    make_run(
        "tiny-c4",
        run_id=RUN_B,
        created=FROZEN_NOW - 3600,
        total_steps=60,
        config={
            "preset": "tiny",
            "lr": 0.001,
            "batch_size": 8,
            "data": "c4",
            "model": {"dim": 64, "n_layers": 4},
        },
        write=training(60, t0=FROZEN_NOW - 3500, gpus=0, telemetry_every=0, eval_every=20),
    )
    make_run("not-marked", run_id=RUN_C, created=FROZEN_NOW - 600, total_steps=10, write=training(10))


async def mark_and_compare(pilot) -> CompareScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.scans >= 1, what="runs")
    for run_id in (RUN_A, RUN_B):
        select(app, run_id)
        await pilot.pause()
        await pilot.press("space")
    await wait_for(pilot, lambda: app.screen.marked == [RUN_A, RUN_B], what="two marks")
    await pilot.press("v")
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded, what="compare")
    await pilot.pause(0.2)
    return app.screen


async def test_marked_runs_open_overlaid_curves_and_a_config_diff(three_runs):
    app = CanvasApp(poll_interval=60.0)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1, what="runs")
        select(app, RUN_A)
        await pilot.press("space", "v")  # one marked run: nothing to compare
        await pilot.pause(0.2)
        assert isinstance(app.screen, RunsScreen)
        assert "● tiny-owt" in screen_text(app)
        await pilot.press("space")  # unmarked again
        await wait_for(pilot, lambda: app.screen.marked == [], what="unmarked")
        screen = await mark_and_compare(pilot)
        legend = screen.query_one(Legend)
        assert legend.text.startswith("━━ tiny-owt    ━━ tiny-c4")
        styles = {str(span.style) for span in legend.content.spans}
        for i, variable in enumerate(("plot-train", "plot-val")):
            assert "bold rgb({},{},{})".format(*theme_rgb(app, variable)) in styles, (i, styles)
        plot = screen.query_one(ComparePlot)
        assert set(plot.drawn) == {"tiny-owt", "tiny-owt (val)", "tiny-c4", "tiny-c4 (val)"}
        assert plot.drawn["tiny-owt"][0][-1] == 100 and plot.drawn["tiny-c4"][0][-1] == 60
        assert plot.drawn["tiny-c4 (val)"][0] == [20, 40, 60]
        assert plot.xlabel == "step"
        await pilot.press("x")
        assert plot.xlabel == "tokens seen"
        assert plot.drawn["tiny-owt"][0][-1] == 100 * 2048 and plot.drawn["tiny-c4 (val)"][0][0] == 20 * 2048
        await pilot.press("x")
        assert plot.xlabel == "wall time (s)"  # seconds since the run's first event
        assert plot.drawn["tiny-owt"][0][-1] == pytest.approx(100.0)  # a step a second
        await pilot.press("x")
        assert plot.xlabel == "step"
        # The configs, side by side: every key, the ones that differ highlighted.
        table = screen.query_one("#compare-config", DataTable)
        assert [str(c.label) for c in table.columns.values()] == ["key", "tiny-owt", "tiny-c4"]
        assert [str(c) for c in table.get_row("lr")] == ["lr", "0.002", "0.001"]
        assert [str(c) for c in table.get_row("data")] == ["data", "—", "c4"]
        assert str(table.get_row("model.n_layers")[0].style).startswith("bold")
        assert str(table.get_row("preset")[0].style) == ""
        assert "3 of 6 keys differ" in str(table.border_title)
        await pilot.press("d")
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == [
            "data",
            "lr",
            "model.n_layers",
        ]

        # Another theme: the legend, the curves and the highlighted keys take its colours.
        def first_colour() -> str:
            return str(legend.content.spans[0].style)

        dark = first_colour()
        app.theme = "canvas-light"
        await wait_for(pilot, lambda: first_colour() != dark, what="the legend recoloured")
        assert (
            first_colour()
            == "bold rgb(31,111,168)"
            == "bold rgb({},{},{})".format(*theme_rgb(app, "plot-train"))
        )
        assert str(table.get_row("lr")[0].style) == f"bold {app.theme_variables['warning']}"
        assert plot.drawn["tiny-owt"][0][-1] == 100  # redrawn, same points
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="back")


async def test_compare_shows_hostile_names_and_values_literally():
    a = make_run("h1", meta={"name": HOSTILE}, config={"note": HOSTILE}, write=training(5, telemetry_every=0))
    b = make_run("h2", config={"note": "plain"}, write=training(5, telemetry_every=0))
    app = CanvasApp(poll_interval=60.0)
    async with app.run_test(size=(160, 48)) as pilot:
        app.push_screen(CompareScreen([a.path, b.path]))
        await wait_for(
            pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded, what="loaded"
        )
        await pilot.pause(0.1)
        assert HOSTILE in app.screen.query_one(Legend).text
        row = app.screen.query_one("#compare-config", DataTable).get_row("note")
        assert str(row[1]) == HOSTILE[:47] + "…"
        assert app.is_running


def test_compare_160x48(three_runs, snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(160, 48), run_before=mark_and_compare)


def test_compare_80x24(three_runs, snap_compare):
    """An SSH terminal: the plot keeps its ten rows, the config table scrolls below it."""
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=mark_and_compare)


@pytest.mark.parametrize("theme", ["canvas-light", "canvas-high-contrast"])
def test_compare_in_theme(three_runs, snap_compare, theme):
    """The runs' colours, the legend and the highlighted config keys in the other two themes."""
    assert snap_compare(snapshot_app(theme), terminal_size=(120, 40), run_before=mark_and_compare)
