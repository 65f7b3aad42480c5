"""Every key, generated from the action registry (the same one that feeds bindings and palette)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from canvas_tui.actions import ACTIONS, SCOPES, display_key


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close", id="help.close", tooltip="Close the help"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90; max-width: 100%; height: 90%; border: thick $primary 60%;
                            background: $surface; padding: 0 1; }
    HelpScreen DataTable { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content.assemble(
                    ("Keys", "bold"),
                    ("  ctrl+p: command palette (every action, themes) · esc: close", "$text-muted"),
                ),
                markup=False,
            )
            yield DataTable(id="keys", cursor_type="row", show_row_labels=False, zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("where", "key", "action", "what it does")
        keymap = getattr(self.app, "keymap", {}) or {}
        for scope, title in SCOPES.items():
            for action in ACTIONS:
                if action.scope == scope:
                    table.add_row(
                        Text(title),
                        Text(display_key(action, keymap), style="bold"),
                        Text(action.title),
                        Text(action.help),
                    )
        table.add_row(
            Text(SCOPES["app"]),
            Text("ctrl+p", style="bold"),
            Text("Palette"),
            Text("Command palette: every action of this screen, themes"),
        )
        table.add_row(
            Text(SCOPES["app"]),
            Text("tab", style="bold"),
            Text("Focus"),
            Text("Move between panes and fields"),
        )
        table.focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
