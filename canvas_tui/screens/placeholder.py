"""Navigation slots for the Evaluation and Chat screens, which arrive with their own issue."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class PlaceholderScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="placeholder.back", tooltip="Back"),
    ]
    DEFAULT_CSS = """
    PlaceholderScreen Static { margin: 2 4; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Content.assemble((self.title_text, "bold"), "\n\n", self.text), markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.title_text
