"""Issue 15, "Truthful header and lists": the dashboard tells the truth about a run.

The step counter follows any event with a step; a phase line goes when its phase ends; a run asked
to stop says "stopping…"; a dead run's telemetry is greyed with its age; the checkpoint list shows
what is on disk. Each test writes a real run directory with the real event writer.
"""

from __future__ import annotations

import shutil
import socket

import pytest

from canvas_tui.fmt import fmt_bytes
from canvas_tui.widgets.checkpoints import CheckpointList
from canvas_tui.widgets.run_header import RunHeader
from engine.runs import EventWriter
from engine.runs.control import stop_run
from engine.train.checkpoint import set_pointer
from tests.console_fixtures import FROZEN_NOW, fake_checkpoint, make_app, make_run, open_dashboard, training
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio


def header(screen) -> str:
    return screen.query_one(RunHeader).text


async def test_step_counter_follows_eval_checkpoint_and_sample_events_not_only_metrics():
    def write(w: EventWriter) -> None:
        w.emit("run_info", total_steps=100, params=1000)
        w.emit("metric", step=10, loss=3.5, lr=1e-3, tokens_per_s=100.0)

    run = make_run("steps", status="finished", total_steps=100, write=write)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        assert "step 10/100" in header(screen)
        with EventWriter(run.events_path) as w:
            w.emit("eval", step=20, val_loss=3.0)
        await wait_for(pilot, lambda: "step 20/100" in header(screen), what="the eval's step")
        with EventWriter(run.events_path) as w:
            w.emit("checkpoint", step=30, path="checkpoints/step-000030", kind="last")
        await wait_for(pilot, lambda: "step 30/100" in header(screen), what="the checkpoint's step")
        with EventWriter(run.events_path) as w:
            w.emit("sample", step=40, index=0, prompt="Once", text=" upon")
        await wait_for(pilot, lambda: "step 40/100" in header(screen), what="the sample's step")
        assert "40.0%" in header(screen)


async def test_phase_line_clears_when_its_phase_ends():
    # "starting" with no process yet: the engine is preparing its data (no optimiser step so far).
    run = make_run("phases", status="starting", total_steps=100)
    with EventWriter(run.events_path) as w:
        w.emit("progress", phase="data: tokenize", done=5e6, total=1e7, unit="bytes", eta=30.0)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        await wait_for(pilot, lambda: "data: tokenize" in header(screen), what="the data phase")
        with EventWriter(run.events_path) as w:
            w.emit("progress", phase="data: done", done=1e7, total=1e7, unit="bytes", eta=0.0)
        await wait_for(pilot, lambda: "data:" not in header(screen), what="the ended phase to go")
        with EventWriter(run.events_path) as w:
            w.emit("progress", phase="loading the base", done=0, total=None, unit="steps")
        await wait_for(pilot, lambda: "loading the base" in header(screen), what="the next phase")
        with EventWriter(run.events_path) as w:
            w.emit("progress", phase="loading the base", done=1, total=1, unit="steps", eta=0.0)
        await wait_for(pilot, lambda: "loading the base" not in header(screen), what="the base loaded")
        assert len(header(screen).splitlines()) == 3


async def test_a_run_asked_to_stop_says_stopping_until_it_ends():
    run = make_run("stopper", status="starting", total_steps=100, write=training(5, final=None))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        assert "stopping" not in header(screen)
        stop_run(run)  # a starting run gets the control file (it reads it at its first step)
        await wait_for(pilot, lambda: "stopping…" in header(screen), what="stopping…")
        run.update_meta(status="stopped")  # what the engine writes once it checkpointed and exited
        await wait_for(pilot, lambda: "stopping" not in header(screen), what="the stopped state")
        assert "stopped" in header(screen)


async def test_a_dead_runs_telemetry_is_greyed_with_its_age():
    now = FROZEN_NOW
    run = make_run(
        "dead",
        status="running",  # run.json still says running, but no process: it crashed
        total_steps=100,
        write=training(20, t0=now - 180 - 20, final=None),
        meta={"pid": 2**22 - 7, "pid_start_time": 1.0, "host": socket.gethostname()},
    )
    app = make_app(clock=lambda: now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        await wait_for(pilot, lambda: screen.status.state == "crashed", what="crashed")
        telemetry = screen.query_one("#telemetry")
        await wait_for(pilot, lambda: telemetry.has_class("-stale"), what="greyed telemetry")
        assert {pane.border_subtitle for pane in telemetry.children} == {"last seen 3 min ago"}
        assert screen.stale_note == "last seen 3 min ago"
    live = make_run("alive", status="starting", total_steps=100, write=training(20, t0=now - 200, final=None))
    app = make_app(clock=lambda: now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, live)
        await pilot.pause(0.3)
        assert not screen.query_one("#telemetry").has_class("-stale")
        assert screen.stale_note == ""


async def test_checkpoint_list_shows_the_folders_that_exist():
    # Events name four checkpoints; the engine kept two (rotation), with best and last pointers.
    run = make_run("ckpts", total_steps=100, write=training(100, eval_every=25))
    best = fake_checkpoint(run, 50)
    last = fake_checkpoint(run, 100)
    set_pointer(run.checkpoints_dir, "best", best, 50, 2.5)
    set_pointer(run.checkpoints_dir, "last", last, 100)
    size = sum(f.stat().st_size for f in last.iterdir())
    app = make_app()
    async with app.run_test(size=(140, 44)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        table = screen.query_one(CheckpointList)
        await wait_for(pilot, lambda: len(table.rows_shown) == 2, what="two rows")
        (t1, s1, v1, z1, n1), (t2, s2, v2, _, n2) = table.rows_shown
        assert (t1, s1, n1) == ("last", "100", "step-000100")
        assert v1 == "2.2099"  # from the checkpoint event at step 100
        assert (t2, s2, v2, n2) == ("best", "50", "2.5000", "step-000050")  # the pointer's val loss
        assert z1 == fmt_bytes(size)
        assert table.row_count == 2
        shutil.rmtree(best)
        await wait_for(pilot, lambda: [r[1] for r in table.rows_shown] == ["100"], what="deleted row gone")
        shutil.rmtree(run.checkpoints_dir)
        await wait_for(pilot, lambda: table.rows_shown == [("", "", "none yet", "", "")], what="none yet")
