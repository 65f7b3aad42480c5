"""The Arena screen: blind battles, votes, the reveal, the battles file and the ratings.

First with a scripted client (exact answers: a vote before both answers end is refused, hostile
text stays literal, the snapshot at 80x24), then against REAL inference workers on two tiny models
saved by the test: answers stream into A and B, the names stay hidden until the vote, the vote is
stored with the right winner for the shuffled order, and the ratings panel updates.
"""

from __future__ import annotations

import random

import pytest
from textual.widgets import Input

from canvas_tui.app import CanvasApp
from canvas_tui.chat_models import choice_for
from canvas_tui.screens.arena import ArenaScreen, arena_names
from canvas_tui.screens.chat import Sampling
from engine.eval.arena import ArenaPrompt, battles_path, read_battles
from tests.chat_fixtures import ScriptedFactory, tiny_pretrain_run
from tests.console_fixtures import FROZEN_NOW, HOSTILE, make_run, screen_text
from tests.test_chat_screen import no_workers_left
from tests.waiting import pilot_wait_until as wait_for
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio


def seed_for(order: list[int], n: int = 2) -> int:
    """A seed whose first pair is ``order`` (indices into the models), so a test knows who is A."""
    return next(s for s in range(1000) if random.Random(s).sample(range(n), 2) == order)


async def open_arena(pilot, app: CanvasApp, screen: ArenaScreen, timeout: float = 20) -> ArenaScreen:
    app.push_screen(screen)
    await wait_for(
        pilot,
        lambda: screen.is_mounted and all(c.slot.ready for c in screen.contenders),
        timeout=timeout,
        what="models ready",
    )
    return screen


async def send(pilot, screen: ArenaScreen, text: str) -> None:
    box = screen.query_one("#arena-input", Input)
    box.value = text
    box.focus()
    await pilot.press("enter")


def answered(screen: ArenaScreen) -> bool:
    return screen.round is not None and all(s.done is not None for s in screen.round.sides)


def test_arena_names_stay_distinct():
    a = choice_for("x", "best")
    assert arena_names([a, choice_for("x", "last")]) == ["x@best", "x@last"]
    assert arena_names([choice_for("y"), choice_for("y"), choice_for("z")]) == ["y", "y #2", "z"]


# ------------------------------------------------------------------------------------ scripted
async def test_early_vote_is_refused_then_the_vote_is_stored_and_revealed():
    one, two = make_run("alpha"), make_run("beta")
    choices = [choice_for(str(one.path)), choice_for(str(two.path))]
    factory = ScriptedFactory(
        per_model={"alpha": {"answer": "I am alpha " + HOSTILE}, "beta": {"answer": "beta speaks"}},
        delay=0.05,
        piece=4,
    )
    screen = ArenaScreen(
        choices,
        client_factory=factory,
        seed=seed_for([1, 0]),  # beta is A, alpha is B
        prompts=[ArenaPrompt("Drawn [/INST] prompt", "general")],
    )
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_arena(pilot, app, screen)
        await pilot.press("1")  # nothing to vote on yet
        assert screen.rounds == 0
        await send(pilot, screen, "Who are you?")
        await wait_for(pilot, lambda: screen.round is not None, what="the battle")
        assert screen.query_one("#arena-input", Input).disabled  # locked while the battle is open
        await pilot.press("2")  # too early: refused with a notice
        await pilot.pause(0.05)
        assert screen.rounds == 0 and not read_battles()
        assert any("Wait for both answers" in str(n.message) for n in app._notifications)
        # The answers stream: part of one is on screen before it has ended.
        partial = await wait_for(
            pilot,
            lambda: next((s.text for s in screen.round.sides if s.text and s.done is None), None),
            what="a partial answer",
        )
        full = ("I am alpha " + HOSTILE, "beta speaks")
        assert any(f.startswith(partial) and f != partial for f in full), partial
        await wait_for(pilot, lambda: answered(screen), what="both answers")
        text = screen_text(app)
        assert "beta speaks" in text and "I am alpha" in text
        for piece in ("[bold red]not bold[/]", "[/INST]", "[@click=app.quit]x[/]"):
            assert piece in text, piece  # model text is literal: markup does nothing
        assert "alpha" not in text.replace("I am alpha", "") and "beta" not in text.replace("beta speaks", "")
        # Both requests carried the same sampling seed, and the prompt as the user's message.
        seeds = {c.requests[0]["seed"] for c in factory.clients}
        assert len(seeds) == 1 and factory.clients[0].requests[0]["messages"][0].content == "Who are you?"
        await pilot.press("2")  # B better: B is alpha
        await wait_for(pilot, lambda: screen.ratings_fits >= 2, what="the ratings")
        [battle] = read_battles()
        assert (battle.model_a, battle.model_b, battle.winner) == ("beta", "alpha", "model_b")
        assert battle.answer_a == "beta speaks" and battle.answer_b == "I am alpha " + HOSTILE
        assert battle.prompt == "Who are you?" and battle.sampling["seed"] in seeds
        assert battle.sampling["arena_seed"] == screen.seed and battle.checkpoint_a == "step-000010"
        text = screen_text(app)
        assert "A · beta" in text and "B · alpha" in text and "You voted B is better" in text
        assert screen.ratings.ratings["alpha"].rating > screen.ratings.ratings["beta"].rating
        assert "Ratings · 1 battle" in text
        # The input is back; ctrl+n sends a drawn prompt (hostile text shown literally).
        assert not screen.query_one("#arena-input", Input).disabled
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: answered(screen), what="the drawn battle")
        assert screen.round is not None and screen.round.prompt == "Drawn [/INST] prompt"
        assert "Prompt: Drawn [/INST] prompt" in screen_text(app)
        assert "A · " not in screen_text(app)  # hidden again
        await pilot.press("escape")  # both answered, no vote: dropped, not stored
        await pilot.pause(0.05)
        assert len(read_battles()) == 1 and screen.round is None
        await pilot.press("escape")  # idle: back
        await wait_for(pilot, lambda: not isinstance(app.screen, ArenaScreen), what="back")
    assert all(c.closed for c in factory.clients)


async def test_a_fine_tune_and_its_base_share_one_worker():
    ft = choice_for(str(make_run("chat-v1", kind="finetune").path))
    factory = ScriptedFactory(answer=lambda f: "tuned answer" if f["adapter"] else "base answer")
    screen = ArenaScreen(
        [ft, ft.with_adapter(False)], client_factory=factory, seed=seed_for([1, 0]), prompts=[]
    )
    assert [c.name for c in screen.contenders] == ["chat-v1", "chat-v1 (base)"]
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_arena(pilot, app, screen)
        assert len(factory.clients) == 1  # loaded once
        await send(pilot, screen, "Hi")
        await wait_for(pilot, lambda: answered(screen), what="both answers")
        await pilot.press("4")
        await wait_for(pilot, lambda: screen.rounds == 1, what="the vote")
    [battle] = read_battles()
    assert (battle.model_a, battle.answer_a) == ("chat-v1 (base)", "base answer")
    assert (battle.model_b, battle.answer_b, battle.winner) == ("chat-v1", "tuned answer", "tie (bothbad)")


async def test_three_models_two_at_random_in_random_order_each_battle():
    runs = [make_run(n) for n in ("alpha", "beta", "gamma")]
    choices = [choice_for(str(r.path)) for r in runs]
    factory = ScriptedFactory(per_model={n: {"answer": f"I am {n}"} for n in ("alpha", "beta", "gamma")})
    screen = ArenaScreen(choices, client_factory=factory, seed=4, prompts=[])
    # The pairs the screen will draw: rng.sample of the three, pair[0] shown as A.
    rng = random.Random(4)
    expected = []
    for _ in range(8):
        pair = rng.sample(["alpha", "beta", "gamma"], 2)
        expected.append(tuple(pair))
        rng.randrange(2**31)  # the battle's sampling seed, drawn after the pair
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_arena(pilot, app, screen)
        assert len(factory.clients) == 3  # every model loaded once, for the whole session
        for n in range(8):
            await send(pilot, screen, f"prompt {n}")
            await wait_for(pilot, lambda: answered(screen), what=f"battle {n}")
            a, b = screen.round.sides
            assert a.text == f"I am {a.contender.name}" and b.text == f"I am {b.contender.name}"
            assert f"A · {a.contender.name}" not in screen_text(app)  # hidden until the vote
            await pilot.press("1" if n % 2 else "3")
            await wait_for(pilot, lambda n=n: screen.rounds == n + 1, what=f"vote {n}")
    battles = read_battles()
    assert [(x.model_a, x.model_b) for x in battles] == expected
    assert len({frozenset(p) for p in expected}) >= 2 and len({p[0] for p in expected}) >= 2
    for x in battles:
        assert (
            x.model_a != x.model_b and x.answer_a == f"I am {x.model_a}" and x.answer_b == f"I am {x.model_b}"
        )
    assert [x.winner for x in battles] == ["tie", "model_a"] * 4


async def test_canvas_arena_opens_the_arena_screen(monkeypatch):
    """`canvas arena A B` runs ``CanvasApp(arena_choices=...)``: the app opens on the Arena with them."""
    import canvas_tui.screens.arena as arena_module

    factory = ScriptedFactory(answer="ok")
    monkeypatch.setattr(arena_module, "spawn_worker", factory)
    one, two = make_run("alpha"), make_run("beta")
    app = CanvasApp(arena_choices=[choice_for(str(one.path)), choice_for(str(two.path))])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_for(
            pilot, lambda: app.screen if isinstance(app.screen, ArenaScreen) else None, what="the arena"
        )
        assert sorted(c.name for c in screen.contenders) == ["alpha", "beta"]
        await wait_for(pilot, lambda: all(c.slot.ready for c in screen.contenders), what="models ready")
        assert "2 models ready · votes: 1 A better · 2 B better · 3 tie · 4 both bad" in screen_text(app)
    assert sorted(c.choice.label for c in factory.clients) == ["alpha", "beta"]


def test_canvas_arena_needs_a_terminal(capsys):
    from canvas_tui.cli import main

    one, two = make_run("alpha"), make_run("beta")
    assert main(["arena", str(one.path), str(two.path)]) == 2  # pytest's stdin is not a TTY
    assert "needs an interactive terminal" in capsys.readouterr().err
    assert main(["arena", "a", "b", "c", "d"]) == 2
    assert "two or three" in capsys.readouterr().err


def test_arena_80x24(snap_compare):
    one = make_run("tiny-owt", run_id="20261127-100000-000-0000aaaa", created=FROZEN_NOW - 7200)
    two = make_run("chat-v1", run_id="20261127-113000-000-0000ffff", created=FROZEN_NOW - 1900)
    choices = [choice_for(str(one.path)), choice_for(str(two.path))]

    async def run_before(pilot) -> None:
        screen = ArenaScreen(
            choices,
            client_factory=ScriptedFactory(
                per_model={
                    "tiny-owt": {"answer": "A **list** keeps items in order. " + HOSTILE},
                    "chat-v1": {"answer": "Lists hold things.\n\n- one\n- two"},
                }
            ),
            seed=seed_for([0, 1]),
            prompts=[],
        )
        await open_arena(pilot, pilot.app, screen)
        await send(pilot, screen, "What is a list?")
        await wait_for(pilot, lambda: answered(screen), what="the answers")
        await pilot.press("1")
        await wait_for(pilot, lambda: screen.ratings_fits >= 2, what="the ratings")
        screen.query_one("#arena-input", Input).cursor_blink = False
        await pilot.pause(0.3)

    assert snap_compare(CanvasApp(poll_interval=60.0), terminal_size=(80, 24), run_before=run_before)


# ------------------------------------------------------------------------------------ real workers
@pytest.mark.slow
async def test_real_workers_battle_vote_reveal_and_ratings():
    runs = [tiny_pretrain_run("tiny-a", seed=0), tiny_pretrain_run("tiny-b", seed=5)]
    choices = [choice_for(str(r.path)) for r in runs]
    screen = ArenaScreen(
        choices, sampling=Sampling(temperature=0, max_new_tokens=10), seed=seed_for([1, 0]), prompts=[]
    )
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_arena(pilot, app, screen, timeout=180)
        await send(pilot, screen, "The quick brown")
        await wait_for(pilot, lambda: answered(screen), timeout=90, what="both answers")
        assert screen.round is not None
        a, b = screen.round.sides
        assert (a.contender.name, b.contender.name) == ("tiny-b", "tiny-a")  # shuffled: tiny-b is A
        assert a.text and b.text and a.answer is not None and a.answer.text == a.text
        assert a.done is not None and a.done.new_tokens == 10 and a.done.finish_reason == "length"
        text = screen_text(app)
        assert "tiny-a" not in text and "tiny-b" not in text  # hidden until the vote
        assert "No battles yet" in text
        await pilot.press("1")  # A better: tiny-b won
        await wait_for(pilot, lambda: screen.ratings_fits >= 2, timeout=30, what="the ratings")
        [battle] = read_battles(battles_path())
        assert (battle.model_a, battle.model_b, battle.winner) == ("tiny-b", "tiny-a", "model_a")
        assert battle.answer_a == a.text and battle.answer_b == b.text
        assert battle.checkpoint_a == battle.checkpoint_b == "step-000010"
        assert battle.sampling["temperature"] == 0 and battle.sampling["max_new_tokens"] == 10
        text = screen_text(app)
        assert "A · tiny-b" in text and "B · tiny-a" in text
        ratings = screen.ratings
        assert ratings is not None and ratings.ratings["tiny-b"].rating > ratings.ratings["tiny-a"].rating
        assert "Ratings · 1 battle" in text and "tiny-a" in text
        # A second battle on the same workers (loaded once): greedy, so the same answers again.
        await send(pilot, screen, "The quick brown")
        await wait_for(pilot, lambda: answered(screen) and not screen.round.voted, timeout=90, what="again")
        by_name = {s.contender.name: s.text for s in screen.round.sides}
        assert by_name == {"tiny-b": a.text, "tiny-a": b.text}
        await pilot.press("3")
        await wait_for(pilot, lambda: screen.ratings_fits >= 3, timeout=30, what="the ratings again")
        assert [x.winner for x in read_battles()] == ["model_a", "tie"]
        assert screen.ratings.n_battles == 2
    wait_until(no_workers_left, timeout=30, what="the workers to exit")
