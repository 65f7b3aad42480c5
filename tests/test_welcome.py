"""The Welcome screen (Pilot, real run store): an empty store opens on it until esc dismisses it
(remembered); enter starts the demo chain's first real run and shows its dashboard; a console
re-opened mid-demo shows the step the chain is at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas_tui.app import NO_WELCOME_ENV, CanvasApp
from canvas_tui.screens.dashboard import DashboardScreen
from canvas_tui.screens.runs import RunsScreen
from canvas_tui.screens.welcome import INTRO, WelcomeScreen
from engine import demo_chain
from engine.runs import RunKind, create_run, wait_for_end
from engine.runs.store import list_runs
from tests.console_fixtures import screen_text
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio


def on_screen(app, cls) -> bool:
    """``cls`` is the current screen and mounted (keys typed before it was shown are dropped)."""
    return isinstance(app.screen, cls) and app.screen.is_mounted


@pytest.fixture(autouse=True)
def real_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite opens empty stores on the Runs screen (conftest); these tests check the real default."""
    monkeypatch.delenv(NO_WELCOME_ENV, raising=False)


async def test_an_empty_store_opens_on_the_welcome_screen_until_dismissed(canvas_home: Path):
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: on_screen(app, WelcomeScreen), what="the welcome screen")
        text = screen_text(app)
        assert "Welcome to Neural Canvas" in text and "enter: start the demo" in text
        assert INTRO[0][:60] in text and INTRO[2][:60] in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: on_screen(app, RunsScreen), what="the runs screen")
        # The demo stays one palette command away.
        (demo,) = [c for c in app.get_system_commands(app.screen) if c.title == "go: demo"]
        demo.callback()
        await wait_for(pilot, lambda: on_screen(app, WelcomeScreen), what="the demo screen again")
        await pilot.press("escape")
        await wait_for(pilot, lambda: on_screen(app, RunsScreen), what="the runs screen again")
        await app.workers.wait_for_complete()
    saved = json.loads((canvas_home / "config" / "console.json").read_text())
    assert saved["welcome_seen"] is True
    assert list_runs() == [] and not (canvas_home / "demo.json").exists()  # nothing was started
    again = CanvasApp(poll_interval=0.1)
    async with again.run_test(size=(130, 40)) as pilot:
        await pilot.pause(0.2)
        assert isinstance(again.screen, RunsScreen)  # remembered: no welcome the second time


async def test_reopened_mid_demo_it_shows_the_step_the_chain_is_at(canvas_home: Path):
    m1 = create_run(RunKind.PRETRAIN, "demo-m1", {"preset": "tiny"})
    m1.update_meta(status="finished")
    m2 = create_run(RunKind.FINETUNE, "demo-m2", {"base": m1.id})
    m2.update_meta(status="stopped", message="stopped by the user")
    demo_chain.new_chain(demo_chain.DemoSettings(), gpus=(0, "no GPU"))
    with demo_chain.edit() as chain:
        chain.step, chain.paused, chain.message = "finetune", True, "finetune was stopped: resume the demo"
        chain.steps["pretrain"].state, chain.steps["pretrain"].run = demo_chain.DONE, m1.id
        chain.steps["finetune"].state, chain.steps["finetune"].run = demo_chain.STOPPED, m2.id
    app = CanvasApp(poll_interval=0.1)
    app.settings.welcome_seen = True  # a dismissed welcome does not hide a demo under way
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: on_screen(app, WelcomeScreen), what="the demo screen")
        text = screen_text(app)
        assert f"[✓] {demo_chain.TITLES['pretrain']}" in text and f"done: run {m1.id}" in text
        assert f"[‖] {demo_chain.TITLES['finetune']}" in text
        assert f"[ ] {demo_chain.TITLES['eval']}" in text
        assert "finetune was stopped: resume the demo" in text and "r: resume" in text
        # The poller adds where the current run is, from its run.json and events.
        await wait_for(pilot, lambda: "demo-m2: stopped, step" in screen_text(app), what="the run's line")
        await pilot.press("enter")  # watch: the current step's run
        await wait_for(pilot, lambda: on_screen(app, DashboardScreen), what="the dashboard")
        assert app.screen.run.id == m2.id
    assert not demo_chain.driver_running()  # a paused chain gets no driver


@pytest.mark.slow
@pytest.mark.usefixtures("shared_cache")  # the corpus prepared once per session
async def test_start_launches_the_first_step_and_shows_its_dashboard(canvas_home: Path):
    small = demo_chain.DemoSettings(steps=2, micro_batch=2, seq_len=32, finetune_steps=1, eval_docs=1)
    app = CanvasApp(poll_interval=0.1, demo_settings=small)
    try:
        async with app.run_test(size=(150, 40)) as pilot:
            await wait_for(pilot, lambda: on_screen(app, WelcomeScreen), what="the welcome screen")
            await pilot.press("enter")
            await wait_for(pilot, lambda: on_screen(app, DashboardScreen), timeout=30, what="dashboard")
            runs = list_runs()
            assert len(runs) == 1 and runs[0].read_meta().kind == "pretrain"
            assert app.screen.run.id == runs[0].id
            chain = demo_chain.load_chain()
            assert chain is not None and chain.settings == small
            assert (chain.step, chain.steps["pretrain"].state, chain.steps["pretrain"].run) == (
                "pretrain",
                "running",
                runs[0].id,
            )
            assert runs[0].read_meta().config["max_steps"] == 2
            # Back on the demo screen: s stops the demo (the run stops), r resumes it (the same step
            # goes on: its run resumed from its checkpoint, or started afresh if it had none yet).
            await pilot.press("escape")
            await wait_for(pilot, lambda: on_screen(app, WelcomeScreen), what="the demo screen")
            await pilot.press("s")
            await wait_for(
                pilot, lambda: (c := demo_chain.load_chain()) is not None and c.paused, what="paused"
            )
            stopped = wait_for_end(runs[0], 120)
            assert stopped.state in ("stopped", "finished"), stopped
            await pilot.press("r")

            def going_again() -> bool:
                chain = demo_chain.load_chain()
                return chain is not None and not chain.paused and chain.steps[chain.step].state == "running"

            await wait_for(pilot, going_again, timeout=30, what="the demo going again")
    finally:
        if demo_chain.load_chain() is not None:
            demo_chain.stop()
        for run in list_runs():
            wait_for_end(run, 120)


async def test_a_finished_demo_offers_the_side_by_side_chat_and_the_arena(monkeypatch: pytest.MonkeyPatch):
    from canvas_tui.screens.arena import ArenaScreen
    from canvas_tui.screens.chat import ChatScreen
    from tests.chat_fixtures import ScriptedFactory

    # Scripted inference workers: this test is about what the demo screen opens, not the models.
    monkeypatch.setattr("canvas_tui.screens.chat.spawn_worker", ScriptedFactory())
    monkeypatch.setattr("canvas_tui.screens.arena.spawn_worker", ScriptedFactory())
    m1 = create_run(RunKind.PRETRAIN, "demo-m1", {"preset": "tiny"})
    m2 = create_run(RunKind.FINETUNE, "demo-m2", {"base": m1.id})
    demo_chain.new_chain(demo_chain.DemoSettings(), gpus=(0, "no GPU"))
    with demo_chain.edit() as chain:
        chain.step = demo_chain.FINISHED
        for step, run in (("pretrain", m1), ("finetune", m2), ("eval", None), ("chat", None)):
            chain.steps[step].state, chain.steps[step].run = demo_chain.DONE, run.id if run else None
        chain.answers = {"model1": "a list [/INST] holds", "model2": "A list is ordered."}
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(150, 40)) as pilot:
        await pilot.pause(0.2)
        assert on_screen(app, RunsScreen)  # a finished demo does not open the console on itself
        app.open_demo()
        await wait_for(pilot, lambda: on_screen(app, WelcomeScreen), what="the demo screen")
        text = screen_text(app)
        assert "Model 1 answers 'What is a Python list?': 'a list [/INST] holds'" in text  # literally
        assert "c: chat with Model 1 and Model 2 side by side" in text
        await pilot.press("c")
        await wait_for(pilot, lambda: on_screen(app, ChatScreen), what="the chat")
        assert [c.label for c in app.screen.initial] == ["demo-m1", "demo-m2"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: on_screen(app, WelcomeScreen), what="the demo screen again")
        await pilot.press("a")
        await wait_for(pilot, lambda: on_screen(app, ArenaScreen), what="the arena")
        assert [c.label for c in app.screen.choices] == ["demo-m1", "demo-m2"]
