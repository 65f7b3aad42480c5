"""The Chat screen's behaviour while an answer streams, with Pilot against the scripted client.

Four promises of the screen, each tested so that the broken version fails:

- the conversation sticks to the bottom as text arrives, stays where the user scrolled up to,
  and follows again once they scroll back to the end (``anchor()``);
- the message box is multi-line: enter is a newline, ctrl+s sends, and the newlines reach the
  model (chat messages and plain prompts) and the saved chat;
- ``y`` copies the column's last answer, the model's text exactly, as an OSC 52 escape written to
  the terminal (what works over SSH): the test records what the app writes to its driver, the one
  stand-in being the terminal itself;
- an answer streams through ``Markdown.append`` (Textual's ``MarkdownStream``): the document is
  never re-parsed and re-mounted whole per token, so its earlier blocks stay the same widgets.

The scripted client is paced by a semaphore where the test needs the answer mid-stream, so no
assertion depends on the speed of a loaded machine.
"""

from __future__ import annotations

import base64
import json
import threading

import pytest
from textual.widgets import Markdown, TextArea
from textual.widgets.markdown import MarkdownBlock

from canvas_tui.app import CanvasApp
from canvas_tui.chat_models import choice_for
from canvas_tui.screens.chat import Column
from canvas_tui.widgets.chat_column import literal
from tests.chat_fixtures import ScriptedFactory, chat_files
from tests.console_fixtures import HOSTILE, make_run, screen_text
from tests.test_chat_screen import open_chat, run_choice, send
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio

PARAGRAPH = "Paragraph {:02d} of a long answer, one piece each.\n\n"
PARAGRAPHS = "".join(PARAGRAPH.format(i) for i in range(90))


async def release(pilot, gate: threading.Semaphore, column: Column, pieces: int, piece: int) -> None:
    """Let ``pieces`` more pieces of the answer through and wait until the screen has laid them
    out: the text is in the Markdown and the log's scrollable height has grown."""
    assert column.answer is not None
    log = column.widget.log_view
    answer = column.answer
    want = len(answer.text) + pieces * piece
    before = log.virtual_size.height
    for _ in range(pieces):
        gate.release()
    await wait_for(pilot, lambda: len(answer.text) == want, what=f"{want} characters of the answer")
    await wait_for(
        pilot,
        lambda: (
            answer.markdown.source == literal(answer.text)
            and len(answer.markdown.query(MarkdownBlock)) == answer.text.count("\n\n")
            and log.virtual_size.height > before
        ),
        what="the new paragraphs laid out",
    )
    await pilot.pause(0.05)  # one more refresh: the compositor places an anchored view


async def test_the_view_sticks_to_the_bottom_unless_the_user_scrolls_up():
    gate = threading.Semaphore(0)
    piece = len(PARAGRAPH.format(0))
    factory = ScriptedFactory(answer=PARAGRAPHS, piece=piece, gate=gate)
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, app, [run_choice()], factory)
        before = await send(pilot, screen, "write a lot")
        column = screen.columns[0]
        log = column.widget.log_view
        await wait_for(pilot, lambda: column.answer is not None, what="the answer")
        # Following: the text overflows the view and the view is at its end, twice over.
        await release(pilot, gate, column, 25, piece)
        assert log.max_scroll_y > 0, "the answer should overflow the view by now"
        assert log.scroll_y == log.max_scroll_y
        await release(pilot, gate, column, 10, piece)
        assert log.scroll_y == log.max_scroll_y > 0
        # The user scrolls up (keys on the focused log): new text no longer moves the view.
        assert screen.focused is log
        await pilot.press("pageup")
        await wait_for(pilot, lambda: log.scroll_y < log.max_scroll_y, what="the scroll up")
        await pilot.pause(0.05)
        kept = log.scroll_y
        await release(pilot, gate, column, 15, piece)
        assert log.scroll_y == kept < log.max_scroll_y
        assert "Paragraph 49" not in screen_text(app)  # the newest text is below the view
        # Back at the end, it follows again.
        await pilot.press("end")
        await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y, what="the scroll to the end")
        await release(pilot, gate, column, 10, piece)
        assert log.scroll_y == log.max_scroll_y
        assert "Paragraph 59" in screen_text(app)
        for _ in range(90):
            gate.release()
        await wait_for(pilot, lambda: screen.answers_done > before, what="the end of the answer")
        assert column.last_answer == PARAGRAPHS
        while gate.acquire(blocking=False):  # the permits the first answer did not use
            pass
        # Scrolled up when the next message is sent: the new answer is followed from its start.
        log.focus()
        await pilot.press("pageup", "pageup")
        await wait_for(pilot, lambda: log.scroll_y < log.max_scroll_y, what="the scroll up")
        before = await send(pilot, screen, "and more")
        await wait_for(pilot, lambda: column.answer is not None and not column.answer.text, what="answer 2")
        await release(pilot, gate, column, 20, piece)
        assert log.scroll_y == log.max_scroll_y
        for _ in range(90):
            gate.release()
        await wait_for(pilot, lambda: screen.answers_done > before, what="the end of answer 2")


async def test_the_message_box_is_multi_line_and_the_newlines_are_sent_and_saved():
    ft_run = make_run("chatty", kind="finetune")
    chatty, plain = choice_for(str(ft_run.path)), run_choice("plain")
    factory = ScriptedFactory(per_model={"plain": {"chat": False}})
    app = CanvasApp()
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_chat(pilot, app, [chatty, plain], factory)
        box = screen.query_one("#chat-input", TextArea)
        box.focus()
        await pilot.press(*"first line", "enter", *"second", "enter", "enter", *"  indented")
        await pilot.pause(0.1)
        # Enter wrote newlines; nothing was sent.
        assert box.text == "first line\nsecond\n\n  indented"
        assert screen.answers_done == 0 and all(not c.requests for c in factory.clients)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.answers_done >= 2, what="both answers")
        sent = "first line\nsecond\n\n  indented"
        by_label = {c.choice.label: c for c in factory.clients}
        [chat_request] = by_label["chatty"].requests
        assert [(m.role, m.content) for m in chat_request["messages"]] == [("user", sent)]
        [plain_request] = by_label["plain"].requests
        assert plain_request["prompt"] == sent
        assert box.text == ""
        # On screen, the user's message keeps its lines.
        lines = screen_text(app).splitlines()
        row = next(i for i, line in enumerate(lines) if "first line" in line)
        col = lines[row].index("first line")
        assert [lines[row + k][col : col + 10] for k in range(4)] == [
            "first line",
            "second    ",
            "          ",
            "  indented",
        ]
    for choice in (chatty, plain):
        [path] = chat_files(choice.run_path or "")
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["content"] for r in records if r.get("role") == "user"] == [sent]


async def test_y_copies_the_last_answer_as_osc_52_with_the_models_exact_text(monkeypatch):
    one = "Use `x = [1, 2]` and **bold** [/INST]\n\n- naïve ✓\n- " + HOSTILE + " \x1b[31mred\x1b[0m\n"
    two = "The other column's answer."
    factory = ScriptedFactory(per_model={"one": {"answer": one}, "two": {"answer": two}})
    app = CanvasApp()
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_chat(pilot, app, [run_choice("one"), run_choice("two")], factory)
        written: list[str] = []
        driver = app._driver
        assert driver is not None
        real_write = driver.write

        def recording_write(data: str) -> None:
            written.append(data)
            real_write(data)

        monkeypatch.setattr(driver, "write", recording_write)
        # Nothing answered yet: nothing is copied.
        screen.query_one("#chat-col-0 .column-log").focus()
        await pilot.press("y")
        await pilot.pause(0.05)
        assert not [w for w in written if "\x1b]52;" in w]
        before = await send(pilot, screen, "hi")
        await wait_for(pilot, lambda: screen.answers_done >= before + 2, what="both answers")
        for index, answer in ((0, one), (1, two), (0, one)):
            written.clear()
            screen.query_one(f"#chat-col-{index} .column-log").focus()
            await pilot.press("y")
            await pilot.pause(0.05)
            osc = [w for w in written if "\x1b]52;" in w]
            copied = [base64.b64decode(w.split(";", 2)[2].rstrip("\a")).decode("utf-8") for w in osc]
            assert copied == [answer], f"column {index}"
            expected = "\x1b]52;c;" + base64.b64encode(answer.encode("utf-8")).decode("ascii") + "\a"
            assert osc == [expected]  # the whole escape: clipboard c, base64, BEL
            assert app.clipboard == answer
        # The answer on screen is drawn literally (its ESC visible), yet the copy is the model's text.
        assert "␛[31mred" in screen_text(app)
        # In the message box, y is a letter, not a copy.
        written.clear()
        box = screen.query_one("#chat-input", TextArea)
        box.focus()
        await pilot.press("y")
        await pilot.pause(0.05)
        assert box.text == "y" and not [w for w in written if "\x1b]52;" in w]


async def test_an_answer_streams_by_appending_not_by_re_rendering_the_document(monkeypatch):
    updates: list[tuple[Markdown, str]] = []
    appended: list[tuple[Markdown, str]] = []
    real_update, real_append = Markdown.update, Markdown.append

    def counting_update(self: Markdown, markdown: str):
        updates.append((self, markdown))
        return real_update(self, markdown)

    def counting_append(self: Markdown, markdown: str):
        appended.append((self, markdown))
        return real_append(self, markdown)

    monkeypatch.setattr(Markdown, "update", counting_update)
    monkeypatch.setattr(Markdown, "append", counting_append)
    gate = threading.Semaphore(0)
    text = "".join(f"Block {i} says **something**.\n\n" for i in range(12)) + "The end."
    factory = ScriptedFactory(answer=text, piece=4, gate=gate)
    app = CanvasApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, app, [run_choice()], factory)
        before = await send(pilot, screen, "blocks please")
        column = screen.columns[0]
        await wait_for(pilot, lambda: column.answer is not None, what="the answer")
        answer = column.answer
        assert answer is not None
        markdown = answer.markdown

        def blocks() -> list[MarkdownBlock]:
            return list(markdown.query(MarkdownBlock))

        # The first three blocks are on screen: remember them as widgets.
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
        opened = len("".join(f"Block {i} says **something**.\n\n" for i in range(3))) // 4 + 1
        gate.release(opened)
        await wait_for(pilot, lambda: len(blocks()) >= 4, what="the first blocks")
        first = blocks()[:3]
        # All but the last piece streams in, piece by piece, with the screen refreshing in between.
        for _ in range(len(pieces) - 1 - opened):
            gate.release()
            await pilot.pause(0.01)
        last = pieces[-1]
        await wait_for(
            pilot,
            lambda: (
                answer.text == text[: -len(last)]
                and markdown.source == literal(answer.text)
                and len(blocks()) == 13
            ),
            what="every block of the answer but its last piece",
        )
        await pilot.pause(0.1)
        assert column.job is not None and not answer.text.endswith(last)  # still generating
        # The blocks shown early are the same widgets, not re-parsed and re-mounted.
        assert [id(b) for b in blocks()[:3]] == [id(b) for b in first]
        assert all(block.is_attached for block in first)
        # The document was built by appends, never by a whole update with text in it.
        assert [m for w, m in updates if w is markdown and m] == []
        fragments = [m for w, m in appended if w is markdown]
        assert "".join(fragments) == answer.text
        assert len(fragments) >= 2
        gate.release()
        await wait_for(pilot, lambda: screen.answers_done > before, what="the end of the answer")
        await pilot.pause(0.1)
        assert column.last_answer == text
        assert "Block 11 says something." in screen_text(app) and "The end." in screen_text(app)
