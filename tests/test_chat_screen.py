"""The Chat screen and its saved conversations.

The store and settings are tested without Textual; the screen's flows with Pilot, first against a
scripted client (exact answers: hostile strings, errors, snapshots) and then against a REAL
inference worker on a tiny model saved by the test (tokens stream in, esc stops mid-stream and
the partial answer stays, two columns stream side by side, a saved chat reopens and continues).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from textual.widgets import Tabs, TextArea

from canvas_tui.app import CanvasApp
from canvas_tui.chat_models import ModelChoice, choice_for, pickable_runs
from canvas_tui.chat_store import ChatMessage, ChatWriter, list_chats, read_chat, store_chats_dir
from canvas_tui.screens.chat import ChatScreen, Sampling, SettingError, parse_sampling
from canvas_tui.screens.chat_picker import ModelPickerScreen, PromptScreen, SavedChatsScreen
from canvas_tui.widgets.chat_column import literal
from tests.chat_fixtures import ScriptedFactory, chat_files, tiny_pretrain_run
from tests.console_fixtures import HOSTILE, fake_checkpoint, make_run, screen_text
from tests.waiting import pilot_wait_until as wait_for
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

ANSI = "\x1b[31mred\x1b[0m"


# ------------------------------------------------------------------------------------ no Textual
def test_chat_file_round_trip_skips_a_torn_line(tmp_path):
    run = make_run("talky")
    choice = choice_for(str(run.path), "best")
    assert choice.run_path == str(run.path) and choice.label == "talky"
    writer = ChatWriter(choice)
    assert not writer.path.exists()  # nothing written before the first message
    writer.add(ChatMessage("user", "Hi [/INST]"))
    writer.add(ChatMessage("assistant", "Hello", extra={"finish_reason": "stop", "sampling": {"seed": 3}}))
    assert writer.path.parent == run.path / "chats"
    with open(writer.path, "ab") as fh:
        fh.write(b'{"v": 1, "type": "message", "role": "user", "cont')  # a crash mid-write
    chat = read_chat(writer.path)
    assert [(m.role, m.content) for m in chat.messages] == [("user", "Hi [/INST]"), ("assistant", "Hello")]
    assert chat.skipped == 1
    assert chat.choice.checkpoint == "best" and chat.choice.run_path == str(run.path)
    assert chat.messages[1].extra["sampling"] == {"seed": 3}
    assert chat.messages[0].ts < chat.messages[1].ts or chat.messages[0].ts == chat.messages[1].ts
    # A writer on the same file continues it (no second header).
    ChatWriter(chat.choice, chat.path).add(ChatMessage("user", "again"))
    lines = [json.loads(x) for x in chat.path.read_text().splitlines()[:3]]
    assert [x["type"] for x in lines] == ["chat", "message", "message"]
    assert [m.content for m in read_chat(chat.path).messages][-1] == "again"
    assert oct(chat.path.stat().st_mode & 0o777) == oct(0o600)


def test_folder_models_are_saved_beside_the_store_and_listed_newest_first(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    choice = choice_for(str(folder))
    assert choice.run_path is None and choice.label == "my-model"
    w1 = ChatWriter(choice, chat_id="20260101-000000-aaaaaa")
    w1.add(ChatMessage("user", "first", ts="2026-01-01T00:00:00"))
    run = make_run("other")
    w2 = ChatWriter(choice_for(str(run.path)), chat_id="20260102-000000-bbbbbb")
    w2.add(ChatMessage("user", "second", ts="2026-01-02T00:00:00"))
    assert w1.path.parent == store_chats_dir() == Path(os.environ["CANVAS_HOME"]) / "chats"
    chats = list_chats()
    assert [c.title for c in chats] == ["second", "first"]
    assert chats[0].choice.run_path == str(run.path)


def test_sampling_settings_are_checked_by_field():
    ok = parse_sampling({"temperature": "0", "top-p": "0.9", "top-k": "40", "max-tokens": "12", "seed": ""})
    assert ok == Sampling(0.0, 0.9, 40, 12, None)
    for key, bad in (
        ("temperature", "-1"),
        ("top-p", "0"),
        ("top-k", "x"),
        ("max-tokens", "0"),
        ("seed", "-3"),
    ):
        values = {"temperature": "1", "top-p": "1", "top-k": "0", "max-tokens": "5", "seed": "1", key: bad}
        with pytest.raises(SettingError) as info:
            parse_sampling(values)
        assert info.value.field_id == key


def test_literal_makes_control_characters_visible():
    assert literal("a\x1b[31mb\tc\nd\x07") == "a␛[31mb\tc\nd�"
    assert literal(HOSTILE) == HOSTILE


def test_one_answer_stream_serves_the_chat_and_the_arena():
    """stream_answer (both screens' generate worker) posts the pieces, then the end or the failure,
    each naming the column or side and the request it belongs to."""
    from canvas_tui.screens.chat import Job, stream_answer
    from tests.chat_fixtures import ScriptedClient

    class Inbox:
        def __init__(self) -> None:
            self.got: list = []

        def post_message(self, message) -> bool:
            self.got.append(message)
            return True

    def payload(m) -> str:
        return m.done.text if hasattr(m, "done") else getattr(m, "text", None) or m.error

    choice, target = ModelChoice("m", "m"), object()
    clients = {
        "answers": ScriptedClient(choice, "Hello there.", piece=5),
        "fails": ScriptedClient(choice, "Hi", generate_error="must be > 0"),
        "gone": None,
    }
    got = {}
    for name, client in clients.items():
        inbox, job = Inbox(), Job()
        stream_answer(inbox, target, job, client, {"prompt": "hi"})
        assert all(m.target is target and m.job is job for m in inbox.got)
        assert (job.stream is None) == (client is None)  # a started stream is there to cancel
        got[name] = [(type(m).__name__, payload(m)) for m in inbox.got]
    assert got == {
        "answers": [
            ("AnswerDelta", "Hello"),
            ("AnswerDelta", " ther"),
            ("AnswerDelta", "e."),
            ("AnswerDone", "Hello there."),
        ],
        "fails": [("AnswerDelta", "Hi"), ("AnswerFailed", "temperature: must be > 0")],
        "gone": [("AnswerFailed", "the model's worker is gone")],
    }


def test_pickable_runs_lists_checkpoints_best_first():
    run = make_run("with-ckpt")
    fake_checkpoint(run, 10)
    fake_checkpoint(run, 20)
    make_run("no-ckpt")
    runs = pickable_runs()
    assert [r.name for r in runs] == ["with-ckpt"]
    assert runs[0].checkpoints == ["last", "step-000020", "step-000010"]
    assert not runs[0].live
    # A run whose engine is alive (this process stands in for it) is marked as training.
    from engine.runs.process import identify

    identity = identify(os.getpid())
    assert identity is not None
    run.update_meta(status="running", **identity.as_meta())
    [live] = pickable_runs()
    assert live.live and live.status == "running"


# ------------------------------------------------------------------------------------ Pilot helpers
async def open_chat(pilot, app: CanvasApp, choices, factory, **kw) -> ChatScreen:
    screen = ChatScreen(choices, client_factory=factory, **kw)
    app.push_screen(screen)
    await wait_for(pilot, lambda: screen.is_mounted and len(screen.columns) == len(choices), what="columns")
    await wait_for(pilot, lambda: all(c.slot.ready for c in screen.columns), timeout=120, what="models ready")
    return screen


async def send(pilot, screen: ChatScreen, text: str) -> int:
    before = screen.answers_done
    box = screen.query_one("#chat-input", TextArea)
    box.text = text
    box.focus()
    await pilot.press("ctrl+s")
    return before


def run_choice(name: str = "tiny-chat", **kw) -> ModelChoice:
    run = make_run(name)
    return choice_for(str(run.path), **kw)


# ------------------------------------------------------------------------------------ scripted client
async def test_answer_streams_is_saved_with_its_settings_and_copies():
    choice = run_choice()
    factory = ScriptedFactory(answer="Hello **world**, from the model.", delay=0.01)
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, app, [choice], factory)
        assert "ready · 5.0M params · float32 · cpu" in screen_text(app)
        screen.query_one("#set-temperature").value = "0"
        screen.query_one("#set-seed").value = "7"
        screen.query_one("#set-system", TextArea).text = "Be brief."
        before = await send(pilot, screen, "Say hi")
        await wait_for(pilot, lambda: screen.answers_done > before, what="the answer")
        text = screen_text(app)
        assert "Hello world, from the model." in text  # Markdown: ** is bold, not shown
        assert "123.4 tok/s" in text and "first token 0.05 s" in text
        assert not screen.query_one("#chat-input", TextArea).disabled
        request = factory.clients[0].requests[0]
        assert request["temperature"] == 0 and request["seed"] == 7 and request["system"] == "Be brief."
        assert [(m.role, m.content) for m in request["messages"]] == [("user", "Say hi")]
        # The second turn carries the history.
        before = await send(pilot, screen, "And again")
        await wait_for(pilot, lambda: screen.answers_done > before, what="the second answer")
        second = factory.clients[0].requests[1]["messages"]
        assert [m.role for m in second] == ["user", "assistant", "user"]
        assert second[1].content == "Hello **world**, from the model."
        # y copies the last answer (focus off the message box).
        screen.query_one("#chat-col-0 .column-log").focus()
        await pilot.press("y")
        assert app.clipboard == "Hello **world**, from the model."
    [path] = chat_files(choice.run_path or "")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["type"] == "chat" and records[0]["label"] == "tiny-chat"
    answer = records[2]
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop"
    assert answer["sampling"]["temperature"] == 0 and answer["sampling"]["seed"] == 7
    assert answer["system"] == "Be brief." and answer["tokens_per_s"] == 123.4 and answer["ts"]
    assert factory.clients[0].closed  # the worker is shut down when the console quits


async def test_hostile_model_text_is_shown_literally_and_does_nothing():
    choice = run_choice(name="evil")
    factory = ScriptedFactory(answer=f"{HOSTILE} {ANSI}", piece=2)
    app = CanvasApp()
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_chat(pilot, app, [choice], factory)
        before = await send(pilot, screen, "user says " + HOSTILE)
        await wait_for(pilot, lambda: screen.answers_done > before, what="the answer")
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "user says " + HOSTILE in text  # the user's message, verbatim
        for piece in ("[bold red]not bold[/]", "[/INST]", "[@click=app.quit]x[/]", "␛[31mred␛[0m"):
            assert piece in text, piece
        assert "\x1b" not in text
        # Clicking where the [@click=app.quit] text is must not quit: the app keeps running.
        await pilot.click(offset=(text.splitlines()[-10].find("@click") + 2, len(text.splitlines()) - 10))
        await pilot.pause(0.2)
        assert app.is_running and isinstance(app.screen, ChatScreen)
        # The rendered prompt shows a hostile system prompt literally too.
        screen.query_one("#set-system", TextArea).text = "[/INST] [@click=app.quit]sys[/]"
        screen.query_one("#chat-input", TextArea).focus()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="the prompt modal")
        await pilot.pause(0.1)
        assert "<|system|>[/INST] [@click=app.quit]sys[/]" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="back")


async def test_esc_stops_the_answer_and_keeps_the_partial_text():
    choice = run_choice()
    factory = ScriptedFactory(answer="word " * 400, delay=0.02, piece=5)
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, app, [choice], factory)
        before = await send(pilot, screen, "talk a lot")
        column = screen.columns[0]
        await wait_for(
            pilot, lambda: column.answer is not None and len(column.answer.text) > 20, what="tokens"
        )
        assert screen.query_one("#chat-input", TextArea).disabled  # locked while generating
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen.answers_done > before, what="the stop")
        assert isinstance(app.screen, ChatScreen)  # esc stopped, it did not go back
        assert 20 < len(column.last_answer) < len("word " * 400)
        assert "stopped" in screen_text(app)
        await pilot.press("escape")  # nothing generating: back
        await wait_for(pilot, lambda: not isinstance(app.screen, ChatScreen), what="back to runs")
    [path] = chat_files(choice.run_path or "")
    answer = json.loads(path.read_text().splitlines()[-1])
    assert answer["finish_reason"] == "cancelled" and answer["content"] == column.last_answer


async def test_errors_unlock_the_input_and_give_the_text_back():
    good, bad = run_choice("good"), run_choice("bad")
    factory = ScriptedFactory(per_model={"bad": {"load_error": "no checkpoint in run bad [/]"}})
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ChatScreen([good, bad], client_factory=factory)
        app.push_screen(screen)
        await wait_for(
            pilot, lambda: len(screen.columns) == 2 and screen.columns[1].slot.error, what="failure"
        )
        await pilot.pause(0.1)
        assert "failed: model: no checkpoint in run bad" in screen_text(app)  # "[/]" wraps
        await send(pilot, screen, "hello")
        assert screen.answers_done == 0  # refused: a model is not loaded
        assert screen.query_one("#chat-input", TextArea).text == "hello"
        # A generate that fails gives the text back.
        factory2 = ScriptedFactory(generate_error="temperature must be at least 0")
        await screen.open_models([good])
        screen.client_factory = factory2
        await screen.open_models([run_choice("fresh")])
        await wait_for(pilot, lambda: screen.columns[0].slot.ready, what="ready")
        before = await send(pilot, screen, "try this")
        await wait_for(pilot, lambda: screen.answers_done > before, what="the failure")
        box = screen.query_one("#chat-input", TextArea)
        assert not box.disabled and box.text == "try this"
        await pilot.pause(0.1)
        assert "error: temperature must be at least 0" in screen_text(app)


async def test_side_by_side_columns_and_tabs_when_narrow():
    run = make_run("chat-ft", kind="finetune")
    ft = choice_for(str(run.path))
    other = run_choice("base-run")
    factory = ScriptedFactory(answer=lambda f: f"adapter={f['adapter']}", delay=0.01)
    app = CanvasApp()
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_chat(pilot, app, [ft, ft.with_adapter(False), other], factory)
        assert len(factory.clients) == 2  # the fine-tune's two columns share one worker
        before = await send(pilot, screen, "compare")
        await wait_for(pilot, lambda: screen.answers_done >= before + 3, what="three answers")
        assert [c.last_answer for c in screen.columns] == ["adapter=True", "adapter=False", "adapter=True"]
        assert "(base, adapter off)" in screen_text(app)
        assert not screen.query_one(Tabs).display
        # 80x24: the columns become tabs, one shown at a time.
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: screen.narrow, what="narrow layout")
        assert screen.query_one(Tabs).display
        assert [c.widget.display for c in screen.columns] == [True, False, False]
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: screen.active == 1, what="next tab")
        assert [c.widget.display for c in screen.columns] == [False, True, False]
        assert "adapter=False" in screen_text(app)


async def test_saved_chat_reopens_and_continues_the_same_file():
    choice = run_choice()
    writer = ChatWriter(choice)
    writer.add(ChatMessage("user", "What is a list?"))
    writer.add(ChatMessage("assistant", "An ordered [/INST] sequence.", extra={"tokens_per_s": 9.5}))
    factory = ScriptedFactory(answer="A dict maps keys.")
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, app, [run_choice("elsewhere")], factory)
        screen.query_one("#chat-col-0 .column-log").focus()
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, SavedChatsScreen) and app.screen.loaded)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and "ordered" in screen_text(app))
        await wait_for(pilot, lambda: screen.columns[0].slot.ready, what="ready")
        assert "What is a list?" in screen_text(app) and "9.5 tok/s" in screen_text(app)
        before = await send(pilot, screen, "And a dict?")
        await wait_for(pilot, lambda: screen.answers_done > before, what="the answer")
        sent = factory.clients[-1].requests[-1]["messages"]
        assert [m.content for m in sent] == ["What is a list?", "An ordered [/INST] sequence.", "And a dict?"]
    chat = read_chat(writer.path)
    assert [m.content for m in chat.messages][-2:] == ["And a dict?", "A dict maps keys."]
    assert len(chat_files(choice.run_path or "")) == 1


async def test_reaching_the_chat_screen_from_runs_and_the_palette_picker():
    run = make_run("talk-to-me")
    fake_checkpoint(run, 5)
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1, what="runs")
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.columns)
        chat = app.screen
        assert chat.columns[0].choice.run_path == str(run.path)
        titles = [c.title for c in app.get_system_commands(chat)]
        for title in ("go: Chat", "chat: Send", "chat: Copy answer", "chat: Prompt", "chat: Saved chats"):
            assert title in titles, title
        chat.close_now()
        await pilot.press("escape")  # esc: back (nothing generating)
        await wait_for(pilot, lambda: not isinstance(app.screen, ChatScreen))
        await pilot.press("C")  # the app-wide key: an empty chat opens the picker
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen.loaded)
        assert "talk-to-me" in screen_text(app)
        await pilot.press("enter")  # adds the highlighted run
        assert [c.label for c in app.screen.chosen] == ["talk-to-me"]
        app.screen.dismiss(None)


# ------------------------------------------------------------------------------------ a real worker
def no_workers_left() -> bool:
    """No inference worker is left running under this test process (a zombie has exited)."""
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "engine.serve.worker" in " ".join(proc.cmdline()):
                left.append(proc.pid)
        except psutil.Error:
            continue
    return not left


@pytest.mark.slow
async def test_real_worker_streams_stops_and_reopens():
    run = tiny_pretrain_run()
    choice = choice_for(str(run.path))
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ChatScreen([choice], sampling=Sampling(temperature=0, max_new_tokens=12))
        app.push_screen(screen)
        await wait_for(
            pilot, lambda: screen.columns and screen.columns[0].slot.ready, timeout=120, what="load"
        )
        ready = screen.columns[0].slot.ready
        assert ready is not None and ready.params > 0 and not ready.chat
        assert "plain continuation" in screen_text(app)
        before = await send(pilot, screen, "The quick brown")
        await wait_for(pilot, lambda: screen.answers_done > before, timeout=60, what="an answer")
        column = screen.columns[0]
        first = column.last_answer
        assert first and "tok/s" in screen_text(app)
        assert column.first_text_at is not None and column.sent_at is not None
        print(
            f"open -> first token {column.first_text_at - screen.opened_at:.2f} s; "
            f"send -> first token {column.first_text_at - column.sent_at:.3f} s"
        )
        assert column.answer is not None and column.answer.text == first
        # Hostile text typed by the user is shown literally, and the real worker's rendered prompt too.
        before = await send(pilot, screen, HOSTILE)
        await wait_for(
            pilot, lambda: screen.answers_done > before, timeout=60, what="an answer to hostile text"
        )
        assert HOSTILE in screen_text(app) and app.is_running
        screen.query_one("#chat-input", TextArea).text = HOSTILE
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), timeout=30, what="the prompt")
        await pilot.pause(0.1)
        assert HOSTILE in screen_text(app) and "tokens" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="back to the chat")
        screen.query_one("#chat-input", TextArea).text = ""
        # Greedy is deterministic: the same prompt gives the same text.
        before = await send(pilot, screen, "The quick brown")
        await wait_for(pilot, lambda: screen.answers_done > before, timeout=60, what="a second answer")
        assert screen.columns[0].last_answer == first
        # A long answer stopped with esc mid-stream keeps its partial text.
        screen.query_one("#set-max-tokens").value = "3000"
        previous = column.answer
        # The worker runs in 5 ms slices (SIGSTOP / SIGCONT) until this answer's first text is on the
        # screen, and is held while esc is handled: the stop then reaches it mid-answer whatever the
        # speeds (with one thread a process, a tiny model writes its 3000 tokens in about a second,
        # sooner than a loaded console may read a key). Released, it reads the cancel within a token.
        worker_pid = column.slot.client.pid
        os.kill(worker_pid, signal.SIGSTOP)  # before the request: a streaming app keeps a Pilot busy
        try:
            before = await send(pilot, screen, "Lists, dicts")
            for _ in range(3000):
                await pilot.pause(0.05)
                if column.answer not in (None, previous) and column.answer.text:
                    break
                os.kill(worker_pid, signal.SIGCONT)
                time.sleep(0.005)
                os.kill(worker_pid, signal.SIGSTOP)
            assert column.job is not None and column.answer.text, "no text, or the answer ended"
            await pilot.press("escape")
            await pilot.pause(0.2)
        finally:
            os.kill(worker_pid, signal.SIGCONT)
        await wait_for(pilot, lambda: screen.answers_done > before, timeout=30, what="the stop")
        assert isinstance(app.screen, ChatScreen)
        assert "stopped" in screen_text(app)
        [path] = chat_files(run.path)
        last = json.loads(path.read_text().splitlines()[-1])
        assert last["finish_reason"] == "cancelled" and 0 < last["new_tokens"] < 3000
        assert last["content"] == column.last_answer
        assert last["checkpoint"] == "step-000010"
    wait_until(no_workers_left, timeout=30, what="the worker to exit")
    # Reopened: its messages are back.
    saved = read_chat(path)
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ChatScreen(saved=saved)
        app.push_screen(screen)
        await wait_for(
            pilot, lambda: screen.columns and screen.columns[0].slot.ready, timeout=120, what="load"
        )
        assert len(screen.columns[0].widget.answers()) == 4
        assert screen.columns[0].last_answer == last["content"]
        screen.close_now()
    wait_until(no_workers_left, timeout=30, what="the worker to exit")


@pytest.mark.slow
async def test_real_workers_stream_two_columns_side_by_side():
    one = tiny_pretrain_run("model-a", seed=1)
    two = tiny_pretrain_run("model-b", seed=5)
    app = CanvasApp()
    async with app.run_test(size=(160, 40)) as pilot:
        screen = ChatScreen(
            [choice_for(str(one.path)), choice_for(str(two.path))],
            sampling=Sampling(temperature=0, max_new_tokens=200),
        )
        app.push_screen(screen)
        await wait_for(
            pilot,
            lambda: all(c.slot.ready for c in screen.columns) and screen.columns,
            timeout=180,
            what="loads",
        )
        before = await send(pilot, screen, "A chat model")
        # Both columns receive text before either has finished: they stream concurrently.
        await wait_for(
            pilot,
            lambda: all(c.answer is not None and c.answer.text for c in screen.columns),
            timeout=60,
            what="both columns streaming",
        )
        await wait_for(pilot, lambda: screen.answers_done >= before + 2, timeout=120, what="both answers")
        sents = [c.sent_at for c in screen.columns]
        first_texts = [c.first_text_at for c in screen.columns]
        assert None not in sents and None not in first_texts
        # Both requests left before either column showed text: one column never waits for the
        # other. (Whether a tiny model's short answer ends before the other's first token is up
        # to the scheduler of a loaded 2-core machine, so that is not asserted.)
        assert max(sents) < min(first_texts)
        a, b = (c.last_answer for c in screen.columns)
        assert a and b and a != b  # two different models answered
        assert len(chat_files(one.path)) == 1 and len(chat_files(two.path)) == 1
    wait_until(no_workers_left, timeout=30, what="the workers to exit")


# ------------------------------------------------------------------------------------ canvas chat
def test_canvas_chat_arguments(capsys):
    from canvas_tui.cli import CliError, build_parser, main
    from canvas_tui.commands.chat import choices

    ft = make_run("ft-one", kind="finetune")
    pre = make_run("pre-one")
    args = build_parser().parse_args(["chat", "ft-one", str(pre.path), "--base", "--checkpoint", "last"])
    picked = choices(args)
    assert [(c.label, c.adapter, c.checkpoint) for c in picked] == [
        ("ft-one", True, "last"),
        ("ft-one", False, "last"),
        ("pre-one", True, "last"),
    ]
    assert picked[0].run_path == str(ft.path) and picked[2].run_path == str(pre.path)
    with pytest.raises(CliError, match="at most 3"):
        choices(build_parser().parse_args(["chat", "a", "b", "c", "d"]))
    # Without a terminal it says what to use instead (pytest's stdin is not a TTY).
    assert main(["chat", "pre-one"]) == 2
    assert "canvas generate" in capsys.readouterr().err


async def test_canvas_chat_opens_the_console_on_the_chat_screen(monkeypatch):
    import canvas_tui.screens.chat as chat_module

    factory = ScriptedFactory()
    monkeypatch.setattr(chat_module, "spawn_worker", factory)
    one, two = run_choice("one"), run_choice("two")
    app = CanvasApp(chat_choices=[one, two])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and len(app.screen.columns) == 2)
        await wait_for(pilot, lambda: all(c.slot.ready for c in app.screen.columns), what="ready")
        assert [c.choice.label for c in app.screen.columns] == ["one", "two"]
        assert len(factory.clients) == 2
    app = CanvasApp(chat_choices=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(
            pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen.loaded, what="the picker"
        )
        # No run here has a checkpoint: none is offered, and the folder / Hub id field has focus.
        assert app.screen.runs == [] and app.focused is not None and app.focused.id == "picker-path"


def test_the_chat_screen_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, canvas_tui.screens.chat, canvas_tui.screens.chat_picker, canvas_tui.chat_store, "
        "canvas_tui.commands.chat, engine.serve.client\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


async def pick_with_the_adapter_on_and_off(app: CanvasApp, pilot, name: str) -> ChatScreen:
    """In the model picker the app opened on: the fine-tune ``name`` with "adapter: both", sent;
    the Chat screen it opens, with its two columns."""
    await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen.loaded)
    picker = app.screen
    assert name in screen_text(app)
    picker.query_one("#picker-adapter").value = "both"
    picker.query_one("#picker-runs").focus()
    await pilot.press("enter", "ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and len(app.screen.columns) == 2)
    assert isinstance(app.screen, ChatScreen)
    return app.screen


async def test_picker_offers_a_finetune_with_its_adapter_on_and_off(monkeypatch):
    import canvas_tui.screens.chat as chat_module

    factory = ScriptedFactory()
    monkeypatch.setattr(chat_module, "spawn_worker", factory)
    ft = make_run("ft-two", kind="finetune")
    fake_checkpoint(ft, 8)
    app = CanvasApp(chat_choices=[])
    async with app.run_test(size=(120, 40)) as pilot:
        chat = await pick_with_the_adapter_on_and_off(app, pilot, "ft-two")
        assert [(c.choice.adapter, c.choice.checkpoint) for c in chat.columns] == [
            (True, "last"),
            (False, "last"),
        ]
        await wait_for(pilot, lambda: all(c.slot.ready for c in chat.columns), what="ready")
        assert len(factory.clients) == 1  # one worker for both columns


@pytest.mark.slow
async def test_real_chat_model_keeps_the_history_and_renders_its_template(tmp_path):
    """A transformers folder with a chat template: each turn is sent with the history, the system
    prompt goes through the template, and the rendered prompt shows it all literally."""
    from tests.finetune_fixtures import tiny_base, tiny_tokenizer

    folder = tiny_base(tmp_path / "llama", tiny_tokenizer(tmp_path / "tok"), seed=1)
    choice = choice_for(str(folder))
    app = CanvasApp()
    async with app.run_test(size=(160, 50)) as pilot:
        screen = ChatScreen(
            [choice], sampling=Sampling(temperature=0, max_new_tokens=8), system="[/INST] sys"
        )
        app.push_screen(screen)
        await wait_for(
            pilot, lambda: screen.columns and screen.columns[0].slot.ready, timeout=120, what="load"
        )
        ready = screen.columns[0].slot.ready
        assert ready is not None and ready.chat
        before = await send(pilot, screen, "first question")
        await wait_for(pilot, lambda: screen.answers_done > before, timeout=60, what="the first answer")
        answer = screen.columns[0].last_answer
        screen.query_one("#chat-input", TextArea).text = "second [bold]question[/]"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), timeout=30, what="the prompt")
        await pilot.pause(0.1)
        rendered = app.screen.prompt_text
        assert rendered.index("[/INST] sys") < rendered.index("first question") < rendered.index("second")
        assert answer.strip()[:8] in rendered  # the model's own answer is in the history
        assert "second [bold]question[/]" in screen_text(app)
        await pilot.press("escape")
        screen.close_now()
    wait_until(no_workers_left, timeout=30, what="the worker to exit")


def quantised_base_answers(run_path: str, prompt: str, new: int) -> tuple[str, str]:
    """(adapter on, adapter off) greedy answers to ``prompt`` (the exact template text) computed in
    this process, without the worker: the run's base loaded in its quantisation ALONE for "off" (no
    adapter anywhere), and base + adapter for "on"."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoTokenizer

    from engine.config.finetune import FinetuneConfig
    from engine.finetune.export import base_source
    from engine.finetune.qlora import load_base_model, load_with_adapter
    from engine.runs.store import RunDir

    run = RunDir(Path(run_path))
    cfg = FinetuneConfig.from_dict(run.read_meta().config)
    source, cpu, dtype = base_source(run), torch.device("cpu"), torch.bfloat16
    tok = AutoTokenizer.from_pretrained(run.path / "adapter")
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    stops = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]

    def greedy(model) -> str:
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=0,
            )
        return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    base = load_base_model(source, cfg, cpu, dtype)
    if cfg.quantization != "none":
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    off = greedy(base.eval())
    on = greedy(load_with_adapter(source, run.path / "adapter", cfg, cpu, dtype))
    return on, off


@pytest.mark.slow
async def test_real_finetune_picked_with_its_adapter_on_and_off(corpus_cache, monkeypatch, tmp_path):
    """A REAL fine-tune run (4-bit base + LoRA, trained by `canvas finetune`) picked with "adapter:
    both": one worker, two columns; the adapter-off column answers exactly as the quantised base
    alone, the adapter-on column as base + adapter, and they differ. The chats record the state."""
    from tests.finetune_fixtures import train_tiny_finetune

    monkeypatch.setenv("CANVAS_CACHE", str(corpus_cache))
    train_tiny_finetune(tmp_path, "ft-real")
    app = CanvasApp(chat_choices=[])
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await pick_with_the_adapter_on_and_off(app, pilot, "ft-real")
        on_col, off_col = screen.columns
        assert (on_col.choice.adapter, off_col.choice.adapter) == (True, False)
        assert on_col.slot is off_col.slot  # one worker holds the weights for both
        await wait_for(pilot, lambda: on_col.slot.ready is not None, timeout=120, what="the load")
        ready = on_col.slot.ready
        assert ready.kind == "finetune" and ready.adapter and ready.chat
        assert "(base, adapter off)" in screen_text(app)
        screen.query_one("#set-temperature").value = "0"
        screen.query_one("#set-max-tokens").value = "24"
        # The adapter-off column's rendered prompt: the fine-tune's own chat template.
        screen.query_one("#chat-input", TextArea).text = "What is a list?"
        off_col.widget.query_one(".column-log").focus()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), timeout=30, what="the prompt")
        prompt = app.screen.prompt_text
        assert prompt.startswith("<|im_start|>user\nWhat is a list?")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="back to the chat")
        before = await send(pilot, screen, "What is a list?")
        await wait_for(pilot, lambda: screen.answers_done >= before + 2, timeout=120, what="both answers")
        on_text, off_text = on_col.last_answer, off_col.last_answer
        screen.close_now()
    wait_until(no_workers_left, timeout=30, what="the worker to exit")
    expected_on, expected_off = quantised_base_answers(on_col.choice.run_path, prompt, 24)
    assert off_text == expected_off and off_text  # adapter off: the quantised base, exactly
    assert on_text == expected_on and on_text != off_text  # adapter on: the fine-tune
    saved = [
        json.loads(line) for f in chat_files(on_col.choice.run_path) for line in f.read_text().splitlines()
    ]
    answers = {(r.get("adapter"), r["content"]) for r in saved if r.get("role") == "assistant"}
    assert answers == {(True, on_text), (False, off_text)}
