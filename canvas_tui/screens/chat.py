"""The Chat screen: talk to our models, one or up to three side by side.

Each loaded model is an inference worker process (:class:`engine.serve.client.WorkerClient`,
through :data:`~canvas_tui.chat_models.ClientFactory`); every call to it runs in a thread worker
and reports back with messages (STYLE.md §3): :class:`SlotProgress` / :class:`SlotReady` /
:class:`SlotFailed` while loading, :class:`AnswerDelta` per piece of text and :class:`AnswerDone`
/ :class:`AnswerFailed` at the end. Only the handlers here, on the main thread, touch widgets.

A *slot* is a loaded worker; a *column* is a conversation with one model. Two columns may share a
slot: a fine-tune with its adapter on and off answers from the same weights (the adapter is
switched per request). The same prompt goes to every column at once, one thread each; a slot
serves one generate at a time, so two columns of one slot take turns.

Esc stops every answer (the partial text stays, marked "stopped"); Esc when nothing is being
generated goes back. The input is locked while generating and given back, with the text that was
sent, when every column failed. Each column is saved as it goes (:mod:`canvas_tui.chat_store`).
Below 110 columns the columns become tabs and the settings panel starts hidden.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.message_pump import MessagePump
from textual.widgets import Footer, Header, Input, Label, Static, Tab, Tabs, TextArea

from canvas_tui import actions
from canvas_tui.chat_models import (
    MAX_COLUMNS,
    ChatClient,
    ChatStream,
    ClientFactory,
    ModelChoice,
    error_text,
    spawn_worker,
)
from canvas_tui.chat_store import ChatMessage, ChatWriter, SavedChat, now_iso
from canvas_tui.fmt import fmt_si
from canvas_tui.messages import AnswerDelta, AnswerDone, AnswerFailed
from canvas_tui.screens.base import CanvasScreen
from canvas_tui.widgets.chat_column import Answer, ChatColumn, answer_stats, literal
from engine.serve import protocol

NARROW = 110


@dataclass(frozen=True)
class Sampling:
    """The side panel's settings, checked."""

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }


class SettingError(ValueError):
    def __init__(self, field_id: str, message: str) -> None:
        super().__init__(message)
        self.field_id = field_id


def parse_sampling(values: dict[str, str]) -> Sampling:
    """The panel's text fields as :class:`Sampling`; SettingError names the field that is wrong."""

    def number(key: str, kind: type, ok, what: str) -> Any:
        text = values.get(key, "").strip()
        try:
            value = kind(text)
        except ValueError:
            raise SettingError(key, f"{key.replace('-', ' ')}: {text!r} is not {what}.") from None
        if not ok(value):
            raise SettingError(key, f"{key.replace('-', ' ')}: {value} is not {what}.")
        return value

    seed_text = values.get("seed", "").strip()
    return Sampling(
        temperature=number("temperature", float, lambda v: 0 <= v <= 100, "a number ≥ 0 (0: greedy)"),
        top_p=number("top-p", float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
        top_k=number("top-k", int, lambda v: v >= 0, "a whole number ≥ 0 (0: off)"),
        max_new_tokens=number("max-tokens", int, lambda v: v >= 1, "a whole number ≥ 1"),
        seed=None if not seed_text else number("seed", int, lambda v: v >= 0, "a whole number ≥ 0"),
    )


# ------------------------------------------------------------------------------------ state
@dataclass(eq=False)
class Slot:
    """One worker and what it loaded."""

    choice: ModelChoice
    client: ChatClient | None = None
    ready: protocol.Ready | None = None
    error: str = ""
    progress: str = "starting the worker…"
    closed: bool = False
    loading: bool = False


@dataclass(eq=False)
class Job:
    """One answer being generated; ``cancel`` is safe from any thread and before the stream exists."""

    stream: ChatStream | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()
        stream = self.stream
        if stream is not None:
            stream.cancel()


@dataclass(eq=False)
class Column:
    choice: ModelChoice
    slot: Slot
    widget: ChatColumn
    writer: ChatWriter
    history: list[protocol.Message] = field(default_factory=list)
    job: Job | None = None
    answer: Answer | None = None
    last_answer: str = ""
    settings: tuple[Sampling, str] = (Sampling(), "")
    failed: bool = False
    #: monotonic times of the current answer: sent, first text shown, ended (for tests and figures)
    sent_at: float | None = None
    first_text_at: float | None = None
    ended_at: float | None = None


# ------------------------------------------------------------------------------------ messages
class SlotClient(Message):
    def __init__(self, slot: Slot, client: ChatClient) -> None:
        super().__init__()
        self.slot = slot
        self.client = client


class SlotProgress(Message):
    def __init__(self, slot: Slot, progress: protocol.Progress) -> None:
        super().__init__()
        self.slot = slot
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SlotProgress) and message.slot is self.slot


class SlotReady(Message):
    def __init__(self, slot: Slot, ready: protocol.Ready) -> None:
        super().__init__()
        self.slot = slot
        self.ready = ready


class SlotFailed(Message):
    def __init__(self, slot: Slot, error: str) -> None:
        super().__init__()
        self.slot = slot
        self.error = error


class PromptRendered(Message):
    def __init__(self, title: str, rendered: protocol.Rendered | None, error: str = "") -> None:
        super().__init__()
        self.title = title
        self.rendered = rendered
        self.error = error


# ------------------------------------------------------------------------------------ workers' bodies
def load_slot(screen: MessagePump, slot: Slot, client_factory: ClientFactory) -> None:
    """In a worker thread: start ``slot``'s inference worker and load its model, posting to
    ``screen`` :class:`SlotClient` (the worker started), :class:`SlotProgress` while it loads, then
    :class:`SlotReady` or :class:`SlotFailed`."""
    try:
        client = client_factory(slot.choice)
    except Exception as exc:  # the worker process did not start
        screen.post_message(SlotFailed(slot, f"could not start the inference worker: {error_text(exc)}"))
        return
    screen.post_message(SlotClient(slot, client))

    def progress(p: protocol.Progress) -> None:
        screen.post_message(SlotProgress(slot, p))

    try:
        ready = client.load(slot.choice.model, checkpoint=slot.choice.checkpoint, on_progress=progress)
    except Exception as exc:
        screen.post_message(SlotFailed(slot, error_text(exc)))
        return
    screen.post_message(SlotReady(slot, ready))


def stream_answer(
    screen: MessagePump, target: Any, job: Job, client: ChatClient | None, fields: dict[str, Any]
) -> None:
    """In a worker thread: send ``fields`` to ``client`` (a model's worker) and post the answer to
    ``screen`` as it streams, :class:`AnswerDelta` by :class:`AnswerDelta`, then :class:`AnswerDone`
    or :class:`AnswerFailed`, each naming ``target`` and ``job``. ``job`` gets the stream, so
    :meth:`Job.cancel` can stop it; a job cancelled before the stream existed stops it at once."""
    try:
        if client is None:
            raise RuntimeError("the model's worker is gone")
        stream: ChatStream = client.generate(**fields)
        job.stream = stream
        if job.cancelled.is_set():
            stream.cancel()
        for delta in stream:
            if delta.text:
                screen.post_message(AnswerDelta(target, job, delta.text))
        done = stream.done
        if done is None:
            raise RuntimeError("the worker ended the answer without a final reply")
    except Exception as exc:
        screen.post_message(AnswerFailed(target, job, error_text(exc)))
        return
    screen.post_message(AnswerDone(target, job, done))


def ready_facts(ready: protocol.Ready) -> str:
    """A loaded model in one line: params, dtype, device, memory, what it is, and its note."""
    parts = [f"{fmt_si(ready.params)} params", ready.dtype, ready.device]
    if ready.memory:
        parts.append(f"{ready.memory / 2**20:.1f} MiB")
    if ready.checkpoint:
        parts.append(ready.checkpoint)
    parts.append("chat" if ready.chat else "plain continuation")
    if ready.training:
        parts.append("run still training")
    text = "ready · " + " · ".join(p for p in parts if p)
    return f"{text} · {ready.note}" if ready.note else text


def progress_text(p: protocol.Progress) -> str:
    if p.total:
        amount = f"{p.done:g}/{p.total:g}{' ' + p.unit if p.unit else ''}"
    else:
        amount = f"{p.done:g}{' ' + p.unit if p.unit else ''}" if p.done else ""
    return " · ".join(x for x in (f"loading: {p.phase}" if p.phase else "loading", amount, p.message) if x)


# ------------------------------------------------------------------------------------ the screen
class ChatScreen(CanvasScreen):
    SCOPE = "chat"
    BINDINGS = actions.bindings("chat")
    AUTO_FOCUS = "#chat-input"

    def __init__(
        self,
        choices: list[ModelChoice] | None = None,
        *,
        saved: SavedChat | None = None,
        client_factory: ClientFactory | None = None,
        sampling: Sampling | None = None,
        system: str = "",
    ) -> None:
        super().__init__()
        self.initial = list(choices or ([saved.choice] if saved else []))[:MAX_COLUMNS]
        self.saved = saved
        self.client_factory: ClientFactory = client_factory or spawn_worker
        self.sampling = sampling or Sampling()
        self.system = system
        self.slots: list[Slot] = []
        self.columns: list[Column] = []
        self.active = 0
        self.sent_text = ""
        self.opened_at = time.monotonic()
        self.answers_done = 0  # finished answers (done, stopped or failed), for tests

    # ------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-main"):
            with Vertical(id="chat-area"):
                yield Tabs(id="chat-tabs")
                yield Static(
                    Content.assemble(
                        ("No model open.", "bold"),
                        "  Press ctrl+o to pick one (a run, a folder or a Hub id).",
                    ),
                    id="chat-empty",
                    markup=False,
                )
                yield Horizontal(id="chat-columns")
                yield TextArea(id="chat-input", soft_wrap=True, show_line_numbers=False)
            with VerticalScroll(id="chat-side"):
                yield Label("System prompt")
                yield TextArea(self.system, id="set-system", soft_wrap=True)
                for key, label, value in (
                    ("temperature", "Temperature (0: greedy)", self.sampling.temperature),
                    ("top-p", "Top-p", self.sampling.top_p),
                    ("top-k", "Top-k (0: off)", self.sampling.top_k),
                    ("max-tokens", "Max new tokens", self.sampling.max_new_tokens),
                    (
                        "seed",
                        "Seed (empty: random)",
                        "" if self.sampling.seed is None else self.sampling.seed,
                    ),
                ):
                    yield Label(label)
                    yield Input(f"{value:g}" if isinstance(value, float) else str(value), id=f"set-{key}")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Chat"
        self.query_one("#chat-input", TextArea).border_title = "message · ctrl+s sends"
        self._apply_width(self.size.width, initial=True)
        if self.initial:
            self.call_after_refresh(self._open_initial)
        else:
            self._show_empty()
            self.call_after_refresh(self.action_pick_models)

    async def _open_initial(self) -> None:
        await self.open_models(self.initial, saved=self.saved)

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int, initial: bool = False) -> None:
        if not self.set_narrow(width, NARROW):
            return
        if initial:
            self.query_one("#chat-side").set_class(bool(self.narrow), "-hidden")
        self._show_active()

    def _show_empty(self) -> None:
        self.query_one("#chat-empty").display = not self.columns

    def _show_active(self) -> None:
        tabs = self.query_one("#chat-tabs", Tabs)
        tabs.display = bool(self.narrow) and len(self.columns) > 1
        for i, column in enumerate(self.columns):
            column.widget.display = not self.narrow or i == self.active

    @on(Tabs.TabActivated, "#chat-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab is not None and event.tab.id:
            self.active = int(event.tab.id.removeprefix("tab-"))
            self._show_active()

    # ------------------------------------------------------------------------ opening models
    async def open_models(self, choices: list[ModelChoice], saved: SavedChat | None = None) -> None:
        """Show these models (at most three), reusing a loaded worker for the same model and
        checkpoint; ``saved`` (one model) fills its column and continues that file."""
        self.cancel_all()
        choices = choices[:MAX_COLUMNS]
        old = {s.choice.load_key(): s for s in self.slots if not s.error and not s.closed}
        slots: dict[tuple[str, str | None], Slot] = {}
        for choice in choices:
            key = choice.load_key()
            if key not in slots:
                slots[key] = old.pop(key) if key in old else Slot(choice)
        kept = set(map(id, slots.values()))
        close_slots([s for s in self.slots if id(s) not in kept])
        container = self.query_one("#chat-columns", Horizontal)
        await container.remove_children()
        tabs = self.query_one("#chat-tabs", Tabs)
        await tabs.clear()
        self.slots = list(slots.values())
        self.columns = []
        for i, choice in enumerate(choices):
            widget = ChatColumn(choice, i, id=f"chat-col-{i}")
            writer = ChatWriter(choice, saved.path) if saved is not None and i == 0 else ChatWriter(choice)
            self.columns.append(Column(choice, slots[choice.load_key()], widget, writer))
        await container.mount_all([c.widget for c in self.columns])
        for i, column in enumerate(self.columns):
            await tabs.add_tab(Tab(Content(literal(column.choice.title())), id=f"tab-{i}"))
        self.active = 0
        self._show_active()
        self._show_empty()
        if saved is not None and self.columns:
            await self._replay(self.columns[0], saved)
        for slot in self.slots:
            if slot.ready is not None:
                self._slot_state(slot)
            elif not slot.loading:
                slot.loading = True
                self._load(slot)
        self.sub_title = "Chat · " + " | ".join(c.choice.title() for c in self.columns)
        self.query_one("#chat-input", TextArea).focus()

    async def _replay(self, column: Column, saved: SavedChat) -> None:
        for message in saved.messages:
            column.history.append(protocol.Message(message.role, message.content))
            if message.role == "user":
                await column.widget.add_user(message.content)
            else:
                done = _done_from(message.extra, message.content)
                await column.widget.add_answer(message.content, answer_stats(done))
                column.last_answer = message.content
        self.notify(f"Reopened a chat of {len(saved.messages)} messages.", timeout=3, markup=False)

    @work(thread=True, exit_on_error=False, group="chat-load")
    def _load(self, slot: Slot) -> None:
        load_slot(self, slot, self.client_factory)

    @on(SlotClient)
    def _on_client(self, message: SlotClient) -> None:
        slot = message.slot
        slot.client = message.client
        if slot.closed or slot not in self.slots or not self.is_attached:
            _close_in_background([message.client])  # replaced or left while it was starting

    @on(SlotProgress)
    def _on_progress(self, message: SlotProgress) -> None:
        message.slot.progress = progress_text(message.progress)
        self._slot_state(message.slot)

    @on(SlotReady)
    def _on_ready(self, message: SlotReady) -> None:
        message.slot.ready = message.ready
        self._slot_state(message.slot)

    @on(SlotFailed)
    def _on_failed(self, message: SlotFailed) -> None:
        message.slot.error = message.error
        self._slot_state(message.slot)
        if message.slot in self.slots:
            self.notify(message.error, title="Could not load the model", severity="error", markup=False)

    def _slot_state(self, slot: Slot) -> None:
        for column in self.columns:
            if column.slot is not slot:
                continue
            if slot.error:
                column.widget.set_state("failed: " + slot.error, error=True)
            elif slot.ready is not None:
                column.widget.set_state(ready_facts(slot.ready))
            else:
                column.widget.set_state(slot.progress)

    # ------------------------------------------------------------------------ sending
    def generating(self) -> bool:
        return any(c.job is not None for c in self.columns)

    def read_settings(self) -> tuple[Sampling, str] | None:
        values = {
            key: self.query_one(f"#set-{key}", Input).value
            for key in ("temperature", "top-p", "top-k", "max-tokens", "seed")
        }
        try:
            sampling = parse_sampling(values)
        except SettingError as exc:
            self.query_one("#chat-side").remove_class("-hidden")
            self.query_one(f"#set-{exc.field_id}", Input).focus()
            self.notify(str(exc), title="Setting", severity="error", markup=False)
            return None
        return sampling, self.query_one("#set-system", TextArea).text

    async def action_send(self) -> None:
        if self.generating():
            self.notify("Still answering: esc stops it.", severity="warning")
            return
        box = self.query_one("#chat-input", TextArea)
        text = box.text.strip("\n")
        if not text.strip():
            return
        if not self.columns:
            self.notify("No model open: ctrl+o picks one.", severity="warning")
            return
        waiting = [c for c in self.columns if c.slot.ready is None]
        if waiting:
            failed = [c for c in waiting if c.slot.error]
            self.notify(
                "A model failed to load: ctrl+o picks another." if failed else "A model is still loading.",
                severity="warning",
            )
            return
        settings = self.read_settings()
        if settings is None:
            return
        sampling, system = settings
        self.sent_text = text
        box.text = ""
        box.disabled = True
        stamp = now_iso()
        requests: list[tuple[Column, dict[str, Any]]] = []
        for column in self.columns:
            self._save(column, ChatMessage("user", text, stamp))
            ready = column.slot.ready
            assert ready is not None
            fields: dict[str, Any] = sampling.fields()
            if ready.chat:
                column.history.append(protocol.Message("user", text))
                fields.update(
                    messages=list(column.history), system=system or None, adapter=column.choice.adapter
                )
            else:  # a plain continuation model: the text is the prompt, as is
                fields.update(prompt=text, adapter=column.choice.adapter)
            await column.widget.add_user(text)
            column.answer = await column.widget.add_answer(stats=answer_stats(None))
            column.job = Job()
            column.settings = (sampling, system)
            requests.append((column, fields))
        # Every column is ready on screen first, then all requests leave together: no model starts
        # while another column is still being laid out (with no await in between, no answer text
        # can arrive before the last request has left).
        for column, fields in requests:
            assert column.job is not None
            column.sent_at, column.first_text_at, column.ended_at = time.monotonic(), None, None
            self._generate(column, column.job, fields)
        self.query_one(f"#chat-col-{self.active} .column-log").focus()

    @work(thread=True, exit_on_error=False, group="chat-generate")
    def _generate(self, column: Column, job: Job, fields: dict[str, Any]) -> None:
        stream_answer(self, column, job, column.slot.client, fields)

    @on(AnswerDelta)
    async def _on_delta(self, message: AnswerDelta) -> None:
        column: Column = message.target
        if column.job is message.job and column.answer is not None and column in self.columns:
            if column.first_text_at is None:
                column.first_text_at = time.monotonic()
            await column.answer.write(message.text)

    @on(AnswerDone)
    async def _on_done(self, message: AnswerDone) -> None:
        column: Column = message.target
        done = message.done
        if column.job is not message.job or column not in self.columns:
            return
        if column.answer is not None:
            await column.answer.finish(answer_stats(done), done.text)
        column.last_answer = done.text
        if column.slot.ready is not None and column.slot.ready.chat:
            column.history.append(protocol.Message("assistant", done.text))
        sampling, system = column.settings
        extra: dict[str, Any] = {
            "finish_reason": done.finish_reason,
            "prompt_tokens": done.prompt_tokens,
            "new_tokens": done.new_tokens,
            "time_to_first_token_s": done.time_to_first_token_s,
            "tokens_per_s": done.tokens_per_s,
            "checkpoint": column.slot.ready.checkpoint if column.slot.ready else column.choice.checkpoint,
            "adapter": column.choice.adapter,
            "system": system,
            "sampling": sampling.fields(),
        }
        self._save(column, ChatMessage("assistant", done.text, now_iso(), extra))
        self._finish(column, failed=False)

    @on(AnswerFailed)
    async def _on_answer_failed(self, message: AnswerFailed) -> None:
        column: Column = message.target
        if column.job is not message.job or column not in self.columns:
            return
        if column.answer is not None:
            await column.answer.finish(answer_stats(None, message.error))
        if column.history and column.history[-1].role == "user":
            column.history.pop()  # the question stays on screen; it is not part of the context
        self.notify(
            message.error, title=f"{column.choice.title()}: no answer", severity="error", markup=False
        )
        self._finish(column, failed=True)

    def _finish(self, column: Column, failed: bool) -> None:
        column.job = None
        column.ended_at = time.monotonic()
        column.failed = failed
        self.answers_done += 1
        if self.generating():
            return
        box = self.query_one("#chat-input", TextArea)
        box.disabled = False
        if all(c.failed for c in self.columns) and not box.text:
            box.text = self.sent_text  # nothing answered: give the text back to send again
        box.focus()

    def _save(self, column: Column, message: ChatMessage) -> None:
        try:
            column.writer.add(message)
        except OSError as exc:
            self.notify(f"Could not save the chat: {exc}", severity="warning", markup=False)

    def cancel_all(self) -> bool:
        jobs = [c.job for c in self.columns if c.job is not None]
        for job in jobs:
            job.cancel()
        return bool(jobs)

    # ------------------------------------------------------------------------ actions
    def action_stop(self) -> None:
        if not self.cancel_all():
            self.app.pop_screen()

    def action_pick_models(self) -> None:
        from canvas_tui.screens.chat_picker import ModelPickerScreen

        async def picked(choices: list[ModelChoice] | None) -> None:
            if choices:
                await self.open_models(choices)

        self.app.push_screen(ModelPickerScreen([c.choice for c in self.columns]), picked)

    def action_saved_chats(self) -> None:
        from canvas_tui.screens.chat_picker import SavedChatsScreen

        async def picked(chat: SavedChat | None) -> None:
            if chat is not None:
                await self.open_models([chat.choice], saved=chat)

        self.app.push_screen(SavedChatsScreen(), picked)

    async def action_new_chat(self) -> None:
        if self.generating():
            self.notify("Still answering: esc stops it first.", severity="warning")
            return
        await self.open_models([c.choice for c in self.columns])

    def action_toggle_settings(self) -> None:
        self.query_one("#chat-side").toggle_class("-hidden")

    def action_next_column(self) -> None:
        if self.columns:
            self.query_one("#chat-tabs", Tabs).active = f"tab-{(self.active + 1) % len(self.columns)}"

    def current(self) -> Column | None:
        """The column the user is looking at: the active tab, or the one holding focus."""
        if not self.columns:
            return None
        focused = self.focused
        for column in self.columns:
            if focused is not None and column.widget in focused.ancestors_with_self:
                return column
        return self.columns[min(self.active, len(self.columns) - 1)]

    def action_copy_answer(self) -> None:
        column = self.current()
        if column is None or not column.last_answer:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(column.last_answer)
        self.notify(f"Copied the last answer ({len(column.last_answer)} characters).", timeout=2)

    def action_show_prompt(self) -> None:
        column = self.current()
        if column is None or column.slot.ready is None or column.slot.client is None:
            self.notify("No loaded model yet.", severity="warning")
            return
        settings = self.read_settings()
        if settings is None:
            return
        text = self.query_one("#chat-input", TextArea).text.strip("\n")
        fields: dict[str, Any] = {"adapter": column.choice.adapter}
        if column.slot.ready.chat:
            fields.update(
                messages=[*column.history, protocol.Message("user", text)], system=settings[1] or None
            )
        else:
            fields.update(prompt=text)
        self._render_prompt(column.slot.client, column.choice.title(), fields)

    @work(thread=True, exit_on_error=False, group="chat-render")
    def _render_prompt(self, client: ChatClient, title: str, fields: dict[str, Any]) -> None:
        try:
            self.post_message(PromptRendered(title, client.render(**fields)))
        except Exception as exc:
            self.post_message(PromptRendered(title, None, error_text(exc)))

    @on(PromptRendered)
    def _on_rendered(self, message: PromptRendered) -> None:
        from canvas_tui.screens.chat_picker import PromptScreen

        if message.rendered is None:
            self.notify(message.error, title="Could not render the prompt", severity="error", markup=False)
            return
        self.app.push_screen(PromptScreen(message.title, message.rendered.text, message.rendered.tokens))

    # ------------------------------------------------------------------------ leaving
    def on_unmount(self) -> None:
        self.cancel_all()
        close_slots(self.slots)

    def close_now(self) -> None:
        """Close every worker before returning (tests, ``canvas chat`` at exit)."""
        self.cancel_all()
        close_slots(self.slots, wait=True)


def close_slots(slots: list[Slot], *, wait: bool = False) -> None:
    """Shut the workers of ``slots`` down, each once (the slot is marked closed, so a client that
    arrives later is closed on arrival): off the UI thread, or before returning with ``wait``."""
    clients = [s.client for s in slots if s.client is not None and not s.closed]
    for slot in slots:
        slot.closed = True
    if wait:
        _close_clients(clients)
    else:
        _close_in_background(clients)


def _close_in_background(clients: list[ChatClient]) -> None:
    """Shut workers down off the UI thread. A plain (non-daemon) thread: it outlives the screen,
    and the interpreter waits for it at exit, so no worker is left behind when the console quits."""
    if clients:
        threading.Thread(target=_close_clients, args=(clients,), name="chat-close").start()


def _close_clients(clients: list[ChatClient]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()


def _done_from(extra: dict[str, Any], text: str) -> protocol.Done:
    """A saved answer's figures, for the line under it when a chat is reopened."""

    def num(key: str) -> float | None:
        value = extra.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    new_tokens = extra.get("new_tokens")
    return protocol.Done(
        id=None,
        text=text,
        finish_reason=str(extra.get("finish_reason") or "stop"),
        new_tokens=new_tokens if isinstance(new_tokens, int) else 0,
        time_to_first_token_s=num("time_to_first_token_s"),
        tokens_per_s=num("tokens_per_s"),
    )
