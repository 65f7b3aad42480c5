"""End to end: launch a real tiny training run from the New-run form, watch its loss curve grow,
quit the console (the engine keeps going), open a new console, re-attach and see the whole
history still growing, then stop the run. Real engine process, real files, no stubs.

Waits poll the dashboard's view model (never a blind sleep); the timeouts only bound a hang.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from canvas_tui.app import CanvasApp
from canvas_tui.screens.confirm import ConfirmScreen
from canvas_tui.screens.dashboard import DashboardScreen
from canvas_tui.screens.new_run import NewRunScreen
from canvas_tui.screens.runs import RunsScreen
from canvas_tui.widgets.loss_plot import LossPlot
from engine.runs.control import stop_run
from engine.runs.status import run_status
from tests.console_fixtures import REPO, finish
from tests.waiting import pilot_wait_until as wait_for

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,  # a real training run driven from the console
    pytest.mark.usefixtures("shared_cache"),  # the embedded corpus, prepared once per session
    pytest.mark.skipif(
        not (REPO / "engine" / "train" / "worker.py").exists(),
        reason="the training worker (engine/train/worker.py) is not in the checkout yet",
    ),
]

#: What the form is filled with: a 2-layer width-64 model that trains in milliseconds a step on CPU,
#: and a step budget far beyond the test's life, so the run is live until it is stopped.
FORM = (
    ("name", "e2e-live"),
    ("model-dim", "64"),
    ("model-n_layers", "2"),
    ("model-n_heads", "4"),
    ("model-n_kv_heads", "2"),
    ("seq_len", "32"),
    ("micro_batch", "2"),
    ("length", "1000000"),
)


def on_screen(app, cls) -> bool:
    return isinstance(app.screen, cls) and app.screen.is_mounted


def train_steps(screen: DashboardScreen) -> list[float]:
    return list(screen.view.train.xs)


async def type_into(pilot, form: NewRunScreen, key: str, value: str) -> None:
    """Focus a form field, clear it and type ``value`` key by key, as a user would."""
    field = form.query_one(f"#f-{key}", Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*value)


async def test_launch_watch_quit_reattach_and_stop_a_real_run():
    run = None
    try:
        # -- 1. launch from the New-run form ---------------------------------------------------
        app = CanvasApp(poll_interval=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            assert isinstance(app.screen, RunsScreen)
            await pilot.press("n")
            await wait_for(pilot, lambda: on_screen(app, NewRunScreen), 10, "the New-run form")
            form = app.screen
            for key, value in FORM:
                await type_into(pilot, form, key, value)
            await wait_for(pilot, lambda: form.config is not None and not form.errors, 10, "a valid form")
            cfg = form.config
            assert (cfg.model.dim, cfg.model.n_layers, cfg.seq_len, cfg.micro_batch, cfg.max_steps) == (
                64,
                2,
                32,
                2,
                1_000_000,
            )
            form.query_one("#f-name", Input).blur()  # ctrl+l is the screen's key, not the input's
            await pilot.press("ctrl+l")
            await wait_for(pilot, lambda: on_screen(app, DashboardScreen), 30, "the new run's dashboard")
            screen = app.screen
            run = screen.run
            assert run.read_meta().name == "e2e-live"

            # -- 2. the loss curve gains points while we watch --------------------------------
            await wait_for(pilot, lambda: len(train_steps(screen)) >= 1, 120, "the first loss point")
            first = len(train_steps(screen))
            await wait_for(pilot, lambda: len(train_steps(screen)) >= first + 2, 60, "two more loss points")
            plot = screen.query_one(LossPlot)
            await wait_for(pilot, lambda: plot.plotted_points >= first + 2, 10, "the plot to show them")
            assert screen.paints and screen.paints[-1][0] == "full"
            steps_before_quit = train_steps(screen)
            assert steps_before_quit == sorted(steps_before_quit) and steps_before_quit[0] >= 1
            assert run_status(run, tail=0).state == "running"
            await pilot.press("q")
        assert not app.is_running

        # -- 3. quitting the console leaves the engine running --------------------------------
        status = run_status(run, tail=0)
        assert status.state == "running" and status.alive, status

        # -- 4. a new console re-attaches: the history is back and still growing --------------
        app = CanvasApp(poll_interval=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            runs_screen = app.screen
            await wait_for(pilot, lambda: any(r.id == run.id for r in runs_screen.rows), 10, "the run's row")
            table = runs_screen.query_one("#runs-table")
            table.move_cursor(row=table.get_row_index(run.id), animate=False)
            await pilot.press("enter")
            await wait_for(pilot, lambda: on_screen(app, DashboardScreen), 10, "the dashboard")
            screen = app.screen
            assert screen.run.id == run.id
            await wait_for(pilot, lambda: screen.view.resolution == "full", 30, "the history")
            history = train_steps(screen)
            assert history[: len(steps_before_quit)] == steps_before_quit  # rebuilt from the files alone
            assert len(history) >= len(steps_before_quit)
            await wait_for(
                pilot, lambda: len(train_steps(screen)) > len(history), 60, "live points after re-attach"
            )
            await wait_for(
                pilot,
                lambda: screen.status is not None and screen.status.state == "running",
                10,
                "the live status",
            )

            # -- 5. stop it from the console ------------------------------------------------
            await pilot.press("s")
            await wait_for(pilot, lambda: on_screen(app, ConfirmScreen), 10, "the stop question")
            await pilot.press("y")
            await wait_for(pilot, lambda: run_status(run, tail=0).state == "stopped", 90, "the run to stop")
            await wait_for(pilot, lambda: screen.status.state == "stopped", 10, "the dashboard to say so")
        assert not run_status(run, tail=0).is_live
    finally:
        if run is not None and run_status(run, tail=0).is_live:
            try:
                stop_run(run, wait=True, timeout=60)
            finally:
                finish(run)
