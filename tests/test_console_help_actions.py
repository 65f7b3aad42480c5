"""Issue 15, "Help" and "Actions are state-aware".

The help lists the current screen's keys first, then the global ones, and wraps instead of cutting
text off (80x24 and 160x48). The footer and the palette offer Stop only for a live run and Resume
only for a stopped, crashed or failed one, and follow the status as it changes; a crashed run's
header says how to resume; toasts name a run by its name.
"""

from __future__ import annotations

import socket

import pytest

from canvas_tui.actions import ACTIONS, SCOPES
from canvas_tui.app import CanvasApp
from canvas_tui.screens.help import ACTION_WIDTH, KEY_WIDTH, HelpScreen, KeyList
from tests.console_fixtures import make_run, on_screen, open_dashboard, screen_text, training
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio


async def help_descriptions(pilot, app) -> str:
    """The help's "what it does" column, scrolled through top to bottom, as one string."""
    scroll = app.screen.query_one("#keys-scroll")
    box = app.screen.query_one("#keys")
    left = box.region.x + KEY_WIDTH + 2 + ACTION_WIDTH + 2
    right = box.region.right
    top = scroll.region.y
    rows: dict[int, str] = {}
    y = 0
    for _ in range(100):  # a bound, not a wait: a help that never scrolls to its end fails, not hangs
        scroll.scroll_to(y=y, animate=False)
        await pilot.pause(0.05)
        lines = screen_text(app).splitlines()
        for i in range(scroll.region.height):
            line = lines[top + i] if top + i < len(lines) else ""
            rows[int(scroll.scroll_y) + i] = line[left:right].strip()
        if scroll.scroll_y >= scroll.max_scroll_y:
            break
        y += max(1, scroll.region.height)
    else:
        pytest.fail(f"the help never scrolled to its end (at {scroll.scroll_y} of {scroll.max_scroll_y})")
    return " ".join(text for _, text in sorted(rows.items()) if text)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_help_puts_this_screens_keys_first_and_wraps_every_line(size):
    run = make_run("helpful", total_steps=10, write=training(10))
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=size) as pilot:
        await open_dashboard(app, pilot, run)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: on_screen(app, HelpScreen), what="help")
        keys = app.screen.query_one(KeyList)
        assert keys.titles[:2] == [f"This screen: {SCOPES['dashboard']}", SCOPES["app"]]
        assert keys.row_count >= len(ACTIONS)
        assert keys.region.right <= size[0]
        text = await help_descriptions(pilot, app)
        for action in ACTIONS:
            if action.scope in ("dashboard", "app"):
                assert " ".join(action.help.split()) in text, action.id  # whole, wrapped, not cut
        first_dashboard = text.index("Back to the runs list")
        assert first_dashboard < text.index("Leave the console")  # this screen before the global keys


def footer(app) -> str:
    return screen_text(app).split("\n")[-1]


def palette_titles(app) -> set[str]:
    return {command.title for command in app.get_system_commands(app.screen)}


def toasts(messages: list) -> list[str]:
    """The toasts among the messages an app handled (``run_test(message_hook=messages.append)``)."""
    from textual.notifications import Notify

    return [str(m.notification.message) for m in messages if isinstance(m, Notify)]


async def test_stop_and_resume_are_offered_only_in_the_states_that_allow_them():
    # "starting" (no process yet) is live: Stop is offered, Resume is not.
    run = make_run(
        "state-aware",
        status="starting",
        total_steps=10,
        write=training(3, final=None),
        meta={"host": socket.gethostname()},
    )
    app = CanvasApp(poll_interval=0.1)
    handled: list = []
    async with app.run_test(size=(140, 40), message_hook=handled.append) as pilot:
        screen = await open_dashboard(app, pilot, run)
        await wait_for(pilot, lambda: "Stop" in footer(app), what="Stop in the footer")
        assert "Resume" not in footer(app)
        titles = palette_titles(app)
        assert {"run: Stop", "run: Checkpoint now"} <= titles and "run: Resume" not in titles
        # Stop, from the dashboard: the toast names the run by its name, not its id.
        await pilot.press("s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="confirm")
        await pilot.press("y")
        await wait_for(
            pilot, lambda: any("Asked run state-aware to stop" in t for t in toasts(handled)), what="toast"
        )
        assert not any(run.id in t for t in toasts(handled))
        # The engine stops: the footer and the palette follow the new status.
        run.update_meta(status="stopped")
        await wait_for(pilot, lambda: "Resume" in footer(app) and "Stop" not in footer(app), what="footer")
        titles = palette_titles(app)
        assert "run: Resume" in titles and not {"run: Stop", "run: Checkpoint now"} & titles
        await wait_for(pilot, lambda: "canvas resume state-aware" in screen.query_one("#run-header").text)
        await pilot.press("s")  # no longer offered: nothing happens
        await pilot.pause(0.2)
        assert app.screen is screen
        # Resume is refused (this run recorded no resume command): the refusal names it by name too.
        await pilot.press("r")
        await wait_for(
            pilot, lambda: any("recorded no resume command" in t for t in toasts(handled)), what="refusal"
        )
        refusal = next(t for t in toasts(handled) if "recorded no resume command" in t)
        assert refusal.startswith("run state-aware recorded no resume command"), refusal
    finished = make_run("all-done", total_steps=10, write=training(10))
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_dashboard(app, pilot, finished)
        assert not {"Stop", "Resume", "Checkpoint"} & set(footer(app).split())
        assert not {"run: Stop", "run: Resume", "run: Checkpoint now"} & palette_titles(app)
        assert "canvas resume" not in screen.query_one("#run-header").text


async def test_a_crashed_runs_header_says_how_to_resume():
    run = make_run(
        "crashed-run",
        status="running",  # run.json says running; its process is gone: crashed
        total_steps=10,
        write=training(3, final=None),
        meta={"pid": 2**22 - 11, "pid_start_time": 1.0, "host": socket.gethostname()},
    )
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        await wait_for(pilot, lambda: screen.status.state == "crashed", what="crashed")
        await wait_for(pilot, lambda: "canvas resume crashed-run" in screen.query_one("#run-header").text)
        hint = screen.query_one("#run-header").text.splitlines()[-1]
        assert hint == "resume r here, or canvas resume crashed-run in a shell (from its last checkpoint)"
        await wait_for(pilot, lambda: "Resume" in footer(app) and "Stop" not in footer(app), what="footer")


async def test_runs_screen_offers_stop_and_resume_for_the_selected_runs_state():
    live = make_run(
        "live-one", status="starting", write=training(3, final=None), meta={"host": socket.gethostname()}
    )
    stopped = make_run("stopped-one", status="stopped", write=training(3, final="stopped"))
    done = make_run("done-one", write=training(3))
    app = CanvasApp(poll_interval=0.2)
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1, what="runs")
        table = app.screen.query_one("#runs-table")
        expected = {live.id: ("Stop", "Resume"), stopped.id: ("Resume", "Stop"), done.id: (None, "Stop")}
        for run_id, (offered, hidden) in expected.items():
            table.move_cursor(row=table.get_row_index(run_id), animate=False)
            if offered:
                await wait_for(pilot, lambda o=offered: o in footer(app).split(), what=f"{offered} offered")
            await wait_for(pilot, lambda h=hidden: h not in footer(app).split(), what=f"{hidden} hidden")
            titles = palette_titles(app)
            assert (f"runs: {offered}" in titles) if offered else not {"runs: Stop", "runs: Resume"} & titles
            assert f"runs: {hidden}" not in titles
