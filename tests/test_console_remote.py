"""The console on a run store shared across hosts: a host column and "on HOST" for runs elsewhere,
their status from the heartbeat (issue 18)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from canvas_tui.app import CanvasApp
from canvas_tui.screens.dashboard import DashboardScreen
from canvas_tui.screens.runs import RunsScreen
from canvas_tui.widgets.run_header import RunHeader
from engine.runs.heartbeat import Heartbeat, write_heartbeat
from engine.runs.store import create_run
from tests.console_fixtures import make_run, screen_text, training
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio

OTHER = "gpu-node-7"


def remote_run(name: str, beat_age: float):
    run = create_run("pretrain", name)
    started = datetime.fromtimestamp(time.time() - 3600, timezone.utc).isoformat()
    run.update_meta(status="running", host=OTHER, pid=4242, boot_id="boot-of-gpu-node-7", started=started)
    write_heartbeat(run.path, Heartbeat(t=time.time() - beat_age, host=OTHER, pid=4242, interval_s=3.0))
    return run


async def test_runs_list_shows_the_host_of_runs_elsewhere_and_the_header_says_on_host():
    make_run("here", total_steps=10, write=training(10))
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(130, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_for(pilot, lambda: screen.scans >= 1, what="first scan")
        assert " host " not in screen_text(app)  # one machine: no host column
        run = remote_run("far", beat_age=1.0)
        await wait_for(pilot, lambda: OTHER in screen_text(app), timeout=10, what="the host column")
        text = screen_text(app)
        header = next(ln for ln in text.splitlines() if " status " in ln)
        assert header.index("status") < header.index("host") < header.index("step")
        row = next(ln for ln in text.splitlines() if " far " in ln)
        assert "running" in row and "running?" not in row and OTHER in row
        # Its heartbeat goes silent: unresponsive, never crashed.
        write_heartbeat(run.path, Heartbeat(t=time.time() - 600, host=OTHER, pid=4242, interval_s=3.0))
        await wait_for(
            pilot,
            lambda: "unresponsive" in next(ln for ln in screen_text(app).splitlines() if " far " in ln),
            timeout=10,
            what="unresponsive row",
        )
        app.open_dashboard(run.path)
        await wait_for(
            pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.is_mounted, what="dashboard"
        )
        head = app.screen.query_one(RunHeader)
        await wait_for(pilot, lambda: f"on {OTHER}" in head.text, timeout=10, what="on HOST in the header")
        assert "unresponsive" in head.text and "no heartbeat for" in head.text
