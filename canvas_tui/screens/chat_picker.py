"""Modals of the Chat screen: pick models, reopen a saved chat, read the rendered prompt.

The picker lists our runs that hold a checkpoint (a live one marked "training": its newest
checkpoint is read without disturbing it), with a checkpoint choice and, for a fine-tune, its
adapter on, off (the base) or both side by side; a model folder or Hub id can be typed instead.
Up to :data:`~canvas_tui.chat_models.MAX_COLUMNS` models are chosen; the screen answers with them.
Every name shown is untrusted text: ``Content``/``Text``, never markup.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Select, Static

from canvas_tui.chat_models import MAX_COLUMNS, ModelChoice, PickableRun, choice_for, pickable_runs
from canvas_tui.chat_store import SavedChat, list_chats
from canvas_tui.widgets.chat_column import literal
from canvas_tui.widgets.field_input import FieldInput
from canvas_tui.widgets.tables import cursor_key
from engine.runs.meta import RunKind

ADAPTER_MODES = (("adapter on", "on"), ("adapter off (base)", "off"), ("both, side by side", "both"))


class RunsListed(Message):
    def __init__(self, runs: list[PickableRun]) -> None:
        super().__init__()
        self.runs = runs


class ChatsListed(Message):
    def __init__(self, chats: list[SavedChat]) -> None:
        super().__init__()
        self.chats = chats


class ModelPickerScreen(ModalScreen[list[ModelChoice] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "open", "Chat", id="chat_picker.open", tooltip="Chat with the chosen models"),
        Binding("escape", "cancel", "Cancel", id="chat_picker.cancel", tooltip="Back without changing"),
        Binding("ctrl+x", "clear", "Clear", id="chat_picker.clear", tooltip="Clear the chosen models"),
    ]
    DEFAULT_CSS = """
    ModelPickerScreen { align: center middle; }
    ModelPickerScreen > Vertical { width: 100; max-width: 100%; height: 90%; max-height: 100%;
        border: thick $primary 60%; background: $surface; padding: 0 1; }
    ModelPickerScreen DataTable { height: 1fr; min-height: 4; }
    ModelPickerScreen .picker-row { height: auto; }
    ModelPickerScreen Select { width: 1fr; }
    ModelPickerScreen #picker-path { width: 1fr; }
    ModelPickerScreen #picker-chosen { height: auto; padding: 0 1; color: $text; }
    ModelPickerScreen #picker-hint { height: auto; color: $text-muted; }
    ModelPickerScreen Button { margin: 0 0 0 1; }
    """

    def __init__(self, chosen: list[ModelChoice] | None = None) -> None:
        super().__init__()
        self.runs: list[PickableRun] = []
        self.chosen: list[ModelChoice] = list(chosen or [])
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content.assemble(
                    ("Chat with", "bold"),
                    ("  enter: add the run · ctrl+s: chat · ctrl+x: clear · esc: cancel", "$text-muted"),
                ),
                markup=False,
            )
            yield DataTable(id="picker-runs", cursor_type="row", zebra_stripes=True, show_row_labels=False)
            with Horizontal(classes="picker-row"):
                yield Select([], prompt="checkpoint", id="picker-checkpoint", allow_blank=True)
                yield Select(
                    list(ADAPTER_MODES), value="on", id="picker-adapter", allow_blank=False, disabled=True
                )
            with Horizontal(classes="picker-row"):
                yield FieldInput(placeholder="or a model folder / Hub id, then enter", id="picker-path")
                yield Button("Chat (ctrl+s)", id="picker-open", variant="primary")
            yield Static(Content(""), id="picker-chosen", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("name", "kind", "status", "checkpoints", "id")
        self._show_chosen()
        table.focus()
        self._list_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-picker")
    def _list_runs(self) -> None:
        self.post_message(RunsListed(pickable_runs()))

    @on(RunsListed)
    def _listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        table = self.query_one(DataTable)
        table.clear()
        for run in self.runs:
            status = "training" if run.live else run.status
            table.add_row(
                Text(literal(run.name or "-")),
                Text(run.kind),
                Text(status, style="bold" if run.live else ""),
                Text(str(sum(n.startswith("step-") for n in run.checkpoints))),
                Text(run.id, style="dim"),
                key=run.id,
            )
        self.loaded = True
        if self.runs:
            self._highlight(self.runs[0])
        else:
            self.query_one("#picker-path", Input).focus()

    def highlighted(self) -> PickableRun | None:
        key = cursor_key(self.query_one(DataTable))
        return next((r for r in self.runs if r.id == key), None) if key is not None else None

    @on(DataTable.RowHighlighted, "#picker-runs")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        run = self.highlighted()
        if run is not None:
            self._highlight(run)

    def _highlight(self, run: PickableRun) -> None:
        select: Select[str] = self.query_one("#picker-checkpoint", Select)
        select.set_options([(name, name) for name in run.checkpoints])
        select.value = run.checkpoints[0]
        self.query_one("#picker-adapter", Select).disabled = run.kind != RunKind.FINETUNE

    @on(DataTable.RowSelected, "#picker-runs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.add_highlighted()

    def add_highlighted(self) -> None:
        run = self.highlighted()
        if run is None:
            return
        checkpoint = self.query_one("#picker-checkpoint", Select).value
        ckpt = checkpoint if isinstance(checkpoint, str) else None
        mode = self.query_one("#picker-adapter", Select).value if run.kind == RunKind.FINETUNE else "on"
        adapters = {"on": [True], "off": [False], "both": [True, False]}.get(str(mode), [True])
        for on_ in adapters:
            self._add(run.choice(ckpt, on_))

    def _add(self, choice: ModelChoice) -> None:
        if choice in self.chosen:
            return
        if len(self.chosen) >= MAX_COLUMNS:
            self.notify(f"At most {MAX_COLUMNS} models side by side.", severity="warning")
            return
        self.chosen.append(choice)
        self._show_chosen()

    def _show_chosen(self) -> None:
        text = " · ".join(f"{i + 1}. {c.title()}" for i, c in enumerate(self.chosen))
        self.query_one("#picker-chosen", Static).update(
            Content.assemble(("Chosen: ", "bold"), literal(text) if text else ("none yet", "$text-muted"))
        )

    @on(Input.Submitted, "#picker-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        ref = event.value.strip()
        if ref:
            self._add(choice_for(ref))
            event.input.value = ""

    @on(Button.Pressed, "#picker-open")
    def _open_pressed(self, event: Button.Pressed) -> None:
        self.action_open()

    def action_open(self) -> None:
        if not self.chosen:
            path = self.query_one("#picker-path", Input).value.strip()
            if path:
                self._add(choice_for(path))
            else:
                self.add_highlighted()
        if not self.chosen:
            self.notify("Choose a run, or type a model folder or Hub id.", severity="warning")
            return
        self.dismiss(list(self.chosen))

    def action_clear(self) -> None:
        self.chosen.clear()
        self._show_chosen()

    def action_cancel(self) -> None:
        self.dismiss(None)


class SavedChatsScreen(ModalScreen[SavedChat | None]):
    """The saved conversations, newest first; enter reopens one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="chat_saved.cancel", tooltip="Back"),
    ]
    DEFAULT_CSS = """
    SavedChatsScreen { align: center middle; }
    SavedChatsScreen > Vertical { width: 110; max-width: 100%; height: 80%; max-height: 100%;
        border: thick $primary 60%; background: $surface; padding: 0 1; }
    SavedChatsScreen DataTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.chats: list[SavedChat] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content.assemble(("Saved chats", "bold"), ("  enter: reopen · esc: back", "$text-muted")),
                markup=False,
            )
            yield DataTable(id="saved-chats", cursor_type="row", zebra_stripes=True, show_row_labels=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("updated", "model", "messages", "first message")
        table.focus()
        self._list()

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-saved")
    def _list(self) -> None:
        self.post_message(ChatsListed(list_chats()))

    @on(ChatsListed)
    def _listed(self, message: ChatsListed) -> None:
        self.chats = message.chats
        table = self.query_one(DataTable)
        for i, chat in enumerate(self.chats):
            table.add_row(
                Text(chat.updated[:19].replace("T", " ")),
                Text(literal(chat.choice.title())),
                Text(str(len(chat.messages)), justify="right"),
                Text(literal(chat.title)),
                key=str(i),
            )
        self.loaded = True
        if not self.chats:
            self.notify("No saved chats yet.", timeout=3)

    @on(DataTable.RowSelected, "#saved-chats")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(self.chats[int(str(event.row_key.value))])

    def action_cancel(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen[None]):
    """What the model sees: the rendered prompt text, literally, and its token count."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="chat_prompt.close", tooltip="Close"),
    ]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 100; max-width: 100%; height: 80%; max-height: 100%;
        border: thick $accent 60%; background: $surface; padding: 0 1; }
    PromptScreen VerticalScroll { height: 1fr; background: $boost; }
    """

    def __init__(self, title: str, text: str, tokens: int) -> None:
        super().__init__()
        self.title_text = title
        self.prompt_text = text
        self.tokens = tokens

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content.assemble(
                    ("Rendered prompt", "bold"),
                    " · ",
                    literal(self.title_text),
                    (f" · {self.tokens} tokens · esc: close", "$text-muted"),
                ),
                markup=False,
            )
            with VerticalScroll():
                yield Static(Content(literal(self.prompt_text)), id="prompt-text", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
