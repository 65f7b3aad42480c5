"""`t` on the Runs screen: a run that holds a model opens the chat on it; an eval or serve run
(which holds none) opens the model picker with a note, instead of a worker that can only fail."""

from __future__ import annotations

import pytest
from textual.notifications import Notify

from canvas_tui.app import CanvasApp
from canvas_tui.screens.chat import ChatScreen
from canvas_tui.screens.chat_picker import ModelPickerScreen
from tests.console_fixtures import FROZEN_NOW, fake_checkpoint, make_run
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio


async def test_talk_on_an_eval_run_opens_the_picker_and_says_why():
    model = make_run("the-model", created=FROZEN_NOW)
    fake_checkpoint(model, 5)
    make_run("the-eval", kind="eval", created=FROZEN_NOW + 60)
    app = CanvasApp(poll_interval=0.1)
    handled: list = []
    async with app.run_test(size=(120, 40), message_hook=handled.append) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1, what="runs")
        assert app.screen.selected_row().name == "the-eval"  # the newest is on top
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerScreen), what="the picker")
        said = [str(m.notification.message) for m in handled if isinstance(m, Notify)]
        assert "the-eval is an eval run and holds no model of its own: pick the models to talk to." in said
        assert not any(isinstance(s, ChatScreen) and s.columns for s in app.screen_stack)
        app.screen.dismiss(None)
