"""The console reads typed events: unreadable lines of events.jsonl are noted once in the log
pane (not once per line), and the pane's lines are the words of engine.runs.format."""

from __future__ import annotations

import pytest

from canvas_tui.app import CanvasApp
from canvas_tui.screens.dashboard import DashboardScreen
from canvas_tui.widgets.log_pane import LogPane, event_line
from engine.runs import EventWriter
from engine.runs.events import Log, Status
from engine.runs.format import event_text
from tests.console_fixtures import make_run, training
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio


def test_log_pane_lines_are_the_formatter_words_in_columns():
    log = Log(message="disk [/x] full", level="warning", t=None)
    line = event_line(log)
    assert line is not None and line.plain == "--:--:-- warning disk [/x] full"
    status = Status(state="failed", message="boom")
    line = event_line(status)
    assert (
        line is not None
        and line.plain == "--:--:-- status  " + event_text(status) == "--:--:-- status  failed: boom"
    )
    # A record dict (an older caller) is decoded to the same line.
    assert event_line({"type": "log", "message": "disk [/x] full", "level": "warning"}).plain == (
        "--:--:-- warning disk [/x] full"
    )


async def test_unreadable_lines_are_noted_once_in_the_log_pane():
    run = make_run("torn", status="running", total_steps=10, write=training(10))
    with open(run.events_path, "ab") as fh:
        fh.write(b"not an event\n" * 3)
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_dashboard(run.path)
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        screen = app.screen
        await wait_for(pilot, lambda: screen.view.resolution == "full", what="history")
        pane = screen.query_one(LogPane)
        await wait_for(pilot, lambda: any("skipped" in line for line in pane.plain), what="the note")
        # More bad lines arrive live, then a good one: still one note, and the good line shows.
        with open(run.events_path, "ab") as fh:
            fh.write(b"{broken\n" * 2)
        with EventWriter(run.events_path) as w:
            w.emit("log", message="after the noise", level="info")
        await wait_for(pilot, lambda: any("after the noise" in line for line in pane.plain), what="live")
        notes = [line for line in pane.plain if "unreadable" in line]
        assert notes == ["-------- note    skipped 3 unreadable lines in events.jsonl"]
