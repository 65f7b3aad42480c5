"""Issue 15, "Log pane": untrusted lines split and cleaned the same way from both sources, wrapped
lines keep their gutter and re-wrap on resize, and the history is merged in time order."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from canvas_tui.app import CanvasApp
from canvas_tui.widgets.log_pane import EVENT_GUTTER, LogPane, untrusted_lines
from engine.runs import EventWriter
from tests.console_fixtures import FROZEN_NOW, make_run, open_dashboard
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio

RED = "\x1b[31m"
RESET = "\x1b[0m"


async def open_log(app, pilot, run) -> LogPane:
    screen = await open_dashboard(app, pilot, run)
    pane = screen.query_one(LogPane)
    await wait_for(pilot, lambda: pane.wrap_width > 0 and len(pane.lines) > 0, what="the log drawn")
    return pane


def screen_lines(pane: LogPane) -> list[str]:
    return [strip.text.rstrip() for strip in pane.lines]


def test_untrusted_text_is_split_coloured_and_neutralised():
    lines = untrusted_lines(f"first\nsecond {RED}red{RESET} end\r\nthird\u202eevil\x07")
    assert [t.plain for t in lines] == ["first", "second red end", "third\ufffdevil"]  # the bell is dropped
    red = lines[1]
    assert [(red.plain[s.start : s.end], str(s.style)) for s in red.spans] == [("red", "color(1)")]


async def test_newlines_ansi_and_bidi_in_events_and_engine_log_show_the_same_way():
    run = make_run(
        "noisy",
        write=lambda w: w.emit(
            "log", message=f"line one\nline two {RED}red{RESET}\u202eend", level="warning", t=FROZEN_NOW
        ),
        log_lines=[f"engine {RED}red{RESET} done\u202etail"],
    )
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(140, 44)) as pilot:
        pane = await open_log(app, pilot, run)
        plain = pane.plain
        first = next(i for i, line in enumerate(plain) if line.endswith("line one"))
        assert plain[first][8:] == " warning line one"
        assert plain[first + 1] == " " * EVENT_GUTTER + "line two red\ufffdend"  # its own line, gutter kept
        assert "│ engine red done\ufffdtail" in plain
        text = "\n".join(screen_lines(pane))
        assert "\x1b" not in text and "[31m" not in text and "\u202e" not in text
        # Live events are cleaned the same way.
        with EventWriter(run.events_path) as w:
            w.emit("status", state="failed", message=f"boom\n{RED}Traceback{RESET}")
        await wait_for(pilot, lambda: pane.plain[-1] == " " * EVENT_GUTTER + "Traceback", what="live lines")
        assert pane.plain[-2].endswith("status  failed: boom")


async def test_history_is_merged_in_time_order():
    t0 = FROZEN_NOW - 600
    header = datetime.fromtimestamp(t0, timezone.utc).isoformat(timespec="seconds")

    def write(w):
        w.emit("log", message="event before", level="info", t=t0 + 5)
        w.emit("log", message="hello", level="info", t=t0 + 10)
        w.emit("status", state="finished", message="", t=t0 + 20)

    run = make_run(
        "merge",
        write=write,
        log_lines=[f"=== canvas: attempt 1 at {header}: python -m engine", "[info] hello", "after hello"],
    )
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(140, 44)) as pilot:
        pane = await open_log(app, pilot, run)
        order = [
            next(i for i, line in enumerate(pane.plain) if want in line)
            for want in ("=== canvas: attempt 1", "event before", "info    hello", "after hello", "finished")
        ]
        assert order == sorted(order), pane.plain
        assert sum("hello" in line and "after" not in line for line in pane.plain) == 1  # shown once


async def test_wrapped_lines_keep_their_gutter_and_rewrap_on_resize():
    long_event = "E" * 40 + " " + " ".join(f"word{i}" for i in range(60))
    long_line = "L" * 30 + " " + " ".join(f"part{i}" for i in range(60))
    run = make_run(
        "wrap",
        write=lambda w: w.emit("log", message=long_event, level="info", t=FROZEN_NOW),
        log_lines=[long_line],
    )
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_log(app, pilot, run)
        wide = pane.wrap_width
        lines = screen_lines(pane)
        assert all(len(line) <= wide for line in lines)
        start = next(i for i, line in enumerate(lines) if "EEEE" in line)
        assert lines[start + 1].startswith(" " * EVENT_GUTTER + "word")  # the event's gutter kept
        cont = [line for line in lines if line.startswith("│ part")]
        assert cont, lines  # engine.log continuation lines keep "│ "
        before = len(lines)
        await pilot.resize_terminal(90, 40)
        await wait_for(pilot, lambda: pane.wrap_width < wide, what="re-wrapped to the new width")
        lines = screen_lines(pane)
        assert len(lines) > before
        assert all(len(line) <= pane.wrap_width for line in lines)
        assert sum(line.startswith("│ ") for line in lines) > len(cont) + 1
