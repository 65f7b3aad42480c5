"""One column of the Chat screen: a model's title and state, then the conversation, pinned to the bottom.

Model text is untrusted (STYLE.md §7). Answers are Markdown (the parser never reads Textual
markup, and links do not open); user messages and every other string go through ``Content(text)``;
control characters, ANSI escapes included, are made visible by :func:`literal` before anything
draws them, so ``[bold red]``, ``[@click=app.quit]`` and ``ESC[31m`` are characters and do nothing.

An answer streams through Textual's :class:`~textual.widgets.markdown.MarkdownStream`
(``Markdown.get_stream`` + ``write``): fragments that arrive faster than the screen refreshes are
merged, and only the last block is parsed again, never the whole answer per token. The log is a
:class:`VerticalScroll` with ``anchor()``: it follows new text until the user scrolls up, and
follows again once they scroll back to the bottom.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from canvas_tui.chat_models import ModelChoice
from engine.serve import protocol

_VISIBLE = {"\x1b": "␛", "\r": "", "\t": "\t", "\n": "\n"}


def literal(text: str) -> str:
    """``text`` safe to draw: ESC shown as ␛, other control characters as �, newlines and tabs kept."""
    if text.isprintable():
        return text
    return "".join(_VISIBLE.get(ch, "�") if (ch < " " or "\x7f" <= ch <= "\x9f") else ch for ch in text)


def answer_stats(done: protocol.Done | None, error: str = "") -> Content:
    """The line under an answer: tokens, tokens/s, time to first token, and why it ended."""
    if error:
        return Content.styled(f"error: {literal(error)}", "$error")
    if done is None:
        return Content.styled("generating…", "$text-muted")
    parts = [f"{done.new_tokens} tokens"]
    if done.tokens_per_s is not None:
        parts.append(f"{done.tokens_per_s:.1f} tok/s")
    if done.time_to_first_token_s is not None:
        parts.append(f"first token {done.time_to_first_token_s:.2f} s")
    parts.append(
        {"cancelled": "stopped", "length": "max tokens", "stop": "end"}.get(
            done.finish_reason, done.finish_reason
        )
    )
    style = "$warning" if done.finish_reason == "cancelled" else "$text-muted"
    return Content.styled(" · ".join(parts), style)


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage { background: $boost; padding: 0 1; margin: 1 0 0 0; color: $text; height: auto; }
    """

    def __init__(self, text: str) -> None:
        super().__init__(Content(literal(text)), markup=False)
        self.text = text


class Answer(Vertical):
    """One answer: Markdown that streams, and its figures underneath."""

    DEFAULT_CSS = """
    Answer { height: auto; padding: 0 1; }
    Answer Markdown { margin: 0; padding: 0; background: transparent; }
    Answer .answer-stats { height: auto; color: $text-muted; }
    """

    def __init__(self, text: str = "", stats: Content | None = None) -> None:
        super().__init__()
        self.text = text
        self._initial_stats = stats if stats is not None else Content("")
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Markdown(literal(self.text), open_links=False)
        yield Static(self._initial_stats, classes="answer-stats", markup=False)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    async def write(self, chunk: str) -> None:
        if not chunk:
            return
        self.text += chunk
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
        await self._stream.write(literal(chunk))

    async def finish(self, stats: Content, text: str | None = None) -> None:
        """The answer ended: flush the stream, and show ``text`` (the worker's final word) if it
        differs from what streamed (a stop string cut off the end)."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if text is not None and text != self.text:
            self.text = text
            await self.markdown.update(literal(text))
        self.query_one(".answer-stats", Static).update(stats)


class ChatColumn(Vertical):
    """A model's column: title, state line, and its conversation."""

    DEFAULT_CSS = """
    ChatColumn { width: 1fr; height: 1fr; border: round $panel-lighten-2; padding: 0; }
    ChatColumn:focus-within { border: round $primary; }
    ChatColumn .column-title { height: 1; padding: 0 1; text-style: bold; background: $panel; }
    ChatColumn .column-state { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    ChatColumn .column-state.-error { color: $error; }
    ChatColumn .column-log { height: 1fr; scrollbar-size-vertical: 1; }
    """

    def __init__(self, choice: ModelChoice, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.choice = choice
        self.index = index

    def compose(self) -> ComposeResult:
        yield Static(Content(literal(self.choice.title())), classes="column-title", markup=False)
        yield Static(Content.styled("loading…", "$text-muted"), classes="column-state", markup=False)
        yield VerticalScroll(classes="column-log", can_focus=True)

    def on_mount(self) -> None:
        self.log_view.anchor()

    @property
    def log_view(self) -> VerticalScroll:
        return self.query_one(".column-log", VerticalScroll)

    def set_state(self, text: str | Content, error: bool = False) -> None:
        state = self.query_one(".column-state", Static)
        state.update(text if isinstance(text, Content) else Content(literal(text)))
        state.set_class(error, "-error")

    async def add_user(self, text: str) -> UserMessage:
        message = UserMessage(text)
        await self.log_view.mount(message)
        return message

    async def add_answer(self, text: str = "", stats: Content | None = None) -> Answer:
        answer = Answer(text, stats)
        await self.log_view.mount(answer)
        self.log_view.anchor()  # a new answer follows the stream again
        return answer

    def answers(self) -> list[Answer]:
        return list(self.query(Answer))

    async def clear(self) -> None:
        await self.log_view.remove_children()
