"""Snapshots of the Chat screen at 80x24 (tabs) and 120x40 (side by side), in the three themes.

Deterministic: a scripted client (tests/chat_fixtures.py) gives fixed answers and figures, the runs
have fixed ids and names, and no cursor blinks. The real worker is exercised by
tests/test_chat_screen.py; a snapshot pins the layout, not the model.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, TextArea

from canvas_tui.app import CanvasApp
from canvas_tui.chat_models import choice_for
from canvas_tui.screens.chat import ChatScreen, Sampling
from tests.chat_fixtures import ScriptedFactory
from tests.console_fixtures import FROZEN_NOW, HOSTILE, make_run
from tests.waiting import pilot_wait_until

RUN_P = "20261127-100000-000-0000aaaa"
RUN_F = "20261127-113000-000-0000ffff"
ANSWER = (
    "A **list** keeps items in order:\n\n```python\nxs = [1, 2, 3]\nxs.append(4)\n```\n\n"
    f"Literal text stays literal: {HOSTILE}"
)


def answer(fields) -> str:
    return ANSWER if fields.get("adapter", True) else "Lists hold things. [/INST] lists lists"


@pytest.fixture
def models():
    pre = make_run("tiny-owt", run_id=RUN_P, created=FROZEN_NOW - 7200)
    ft = make_run("chat-v1", kind="finetune", run_id=RUN_F, created=FROZEN_NOW - 1900)
    return choice_for(str(pre.path)), choice_for(str(ft.path))


def chat_after_one_answer(choices, system: str = ""):
    async def run_before(pilot) -> None:
        app = pilot.app
        screen = ChatScreen(
            choices,
            client_factory=ScriptedFactory(answer=answer),
            sampling=Sampling(temperature=0, max_new_tokens=128, seed=1),
            system=system,
        )
        app.push_screen(screen)
        await pilot_wait_until(
            pilot, lambda: screen.columns and all(c.slot.ready for c in screen.columns), what="ready"
        )
        box = screen.query_one("#chat-input", TextArea)
        box.text = "What is a list?"
        box.focus()
        await pilot.press("ctrl+s")
        await pilot_wait_until(pilot, lambda: screen.answers_done >= len(choices), what="the answers")
        for area in screen.query(TextArea):
            area.cursor_blink = False
        for field in screen.query(Input):
            field.cursor_blink = False
        box.focus()
        # The cursor is drawn only while the box has focus; wait for it rather than for a fixed time.
        await pilot_wait_until(pilot, lambda: box.has_focus and not box.disabled, what="the input's focus")
        await pilot.pause(0.3)
        assert box.has_focus, "something took the focus from the message box"
        # With blinking off the cursor is drawn whenever the box has focus, but TextArea's line
        # cache does not key on focus then: a line cached without the cursor (unfocused, or in a
        # blink's off phase, which a loaded machine's timer reaches first) would be reused. Drop
        # the cache (notify_style_update clears it) so the line is drawn as it is now.
        box.notify_style_update()
        box.refresh()
        await pilot.pause()

    return run_before


def test_chat_120x40(models, snap_compare):
    run_before = chat_after_one_answer([models[0]], system="Answer briefly.")
    assert snap_compare(CanvasApp(poll_interval=60.0), terminal_size=(120, 40), run_before=run_before)


def test_chat_80x24(models, snap_compare):
    run_before = chat_after_one_answer([models[0]])
    assert snap_compare(CanvasApp(poll_interval=60.0), terminal_size=(80, 24), run_before=run_before)


def test_chat_side_by_side_120x40(models, snap_compare):
    ft = models[1]
    run_before = chat_after_one_answer([ft, ft.with_adapter(False)])
    assert snap_compare(CanvasApp(poll_interval=60.0), terminal_size=(120, 40), run_before=run_before)


def test_chat_side_by_side_80x24_is_tabs(models, snap_compare):
    ft = models[1]
    run_before = chat_after_one_answer([ft, ft.with_adapter(False), models[0]])
    assert snap_compare(CanvasApp(poll_interval=60.0), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("theme", ["canvas-light", "canvas-high-contrast"])
def test_chat_in_theme(models, snap_compare, theme):
    app = CanvasApp(poll_interval=60.0)
    app.theme = theme
    ft = models[1]
    run_before = chat_after_one_answer([ft, ft.with_adapter(False)], system="Be kind.")
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
