"""A small editor of one run's notes and tags (``e`` on the Runs screen).

What is saved goes to the run's own ``notes.json`` (:mod:`engine.runs.notes`), never to
``run.json``, which the engine rewrites. ``ctrl+s`` saves, ``esc`` leaves without saving; a bad
tag is named under the field and nothing is written. The modal returns the saved notes (or None).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static, TextArea

from canvas_tui.widgets.field_input import FieldInput
from engine.runs.errors import RunStoreError
from engine.runs.notes import RunNotes, read_notes, write_notes


class NotesScreen(ModalScreen[RunNotes | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="notes.save", tooltip="Save the notes and tags"),
        Binding("escape", "cancel", "Cancel", id="notes.cancel", tooltip="Leave without saving"),
    ]
    DEFAULT_CSS = """
    NotesScreen { align: center middle; }
    NotesScreen > Vertical {
        width: 72; max-width: 95%; height: auto; max-height: 95%; padding: 1 2;
        border: thick $primary 60%; background: $surface;
    }
    NotesScreen #notes-text { height: 8; }
    NotesScreen #notes-error { color: $error; height: auto; }
    NotesScreen .notes-label { margin-top: 1; color: $text-muted; }
    NotesScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    NotesScreen Button { margin-left: 2; }
    """

    def __init__(self, run_path: str, run_name: str) -> None:
        super().__init__()
        self.run_path = run_path
        self.run_name = run_name
        self.current = read_notes(run_path)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content.assemble(("Notes and tags of ", "bold"), (self.run_name, "bold")), markup=False
            )
            yield Static("tags (commas or spaces between them)", classes="notes-label", markup=False)
            yield FieldInput(" ".join(self.current.tags), placeholder="baseline lr-sweep", id="notes-tags")
            yield Static("notes", classes="notes-label", markup=False)
            yield TextArea(self.current.text, id="notes-text", soft_wrap=True, show_line_numbers=False)
            yield Static(Content(""), id="notes-error", markup=False)
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Save (ctrl+s)", id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#notes-tags", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#notes-text", TextArea).focus()

    def action_save(self) -> None:
        tags = self.query_one("#notes-tags", Input).value
        text = self.query_one("#notes-text", TextArea).text
        try:
            saved = write_notes(self.run_path, text, tags)
        except (ValueError, RunStoreError, OSError) as exc:
            self.query_one("#notes-error", Static).update(Content(f"Not saved: {exc}"))
            return
        self.dismiss(saved)

    def action_cancel(self) -> None:
        self.dismiss(None)
