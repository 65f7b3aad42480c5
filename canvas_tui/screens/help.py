"""Every key, generated from the action registry (the same one that feeds bindings and palette).

The keys of the screen the help was opened on come first, then those that work everywhere, then the
other screens'. Each section is a table whose last column wraps, so nothing is cut off at 80x24 or at
160 columns; the whole list scrolls.
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from canvas_tui.actions import ACTIONS, SCOPES, CanvasAction, display_key, screen_scope

#: Widths of the key and action columns: the same in every section, so the descriptions line up.
KEY_WIDTH = 10
ACTION_WIDTH = 22
#: Keys Textual gives every screen, listed with the app's.
EXTRA_GLOBAL = (
    ("ctrl+p", "Palette", "Command palette: every action of this screen, themes"),
    ("tab", "Focus", "Move between panes and fields"),
    ("ctrl+q", "Quit", "Quit from anywhere, even from a text field"),
)


def help_sections(
    scope: str, keymap: dict[str, str] | None = None
) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(section title, [(key, action, what it does)]) in the order shown: ``scope``'s keys, then
    the keys that work everywhere, then every other screen's."""

    def rows(actions: list[CanvasAction]) -> list[tuple[str, str, str]]:
        return [(display_key(a, keymap), a.title, a.help) for a in actions]

    sections: list[tuple[str, list[tuple[str, str, str]]]] = []
    if scope in SCOPES and scope != "app":
        sections.append((f"This screen: {SCOPES[scope]}", rows([a for a in ACTIONS if a.scope == scope])))
    sections.append((SCOPES["app"], rows([a for a in ACTIONS if a.scope == "app"]) + list(EXTRA_GLOBAL)))
    for other, title in SCOPES.items():
        if other not in ("app", scope):
            sections.append((f"{title} screen", rows([a for a in ACTIONS if a.scope == other])))
    return [(title, items) for title, items in sections if items]


class KeyList(Static):
    """The sections as Rich tables (literal Text, the description column wrapping)."""

    def __init__(
        self, sections: list[tuple[str, list[tuple[str, str, str]]]], *, id: str | None = None
    ) -> None:
        self.sections = sections
        super().__init__(self._renderable(), id=id, markup=False)

    @property
    def row_count(self) -> int:
        return sum(len(items) for _, items in self.sections)

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.sections]

    def _renderable(self) -> RenderableType:
        parts: list[RenderableType] = []
        for i, (title, items) in enumerate(self.sections):
            parts.append(Text(("\n" if i else "") + title, style="bold underline"))
            table = Table.grid(padding=(0, 2), expand=True)
            table.add_column("key", width=KEY_WIDTH, overflow="fold", style="bold")
            table.add_column("action", width=ACTION_WIDTH, overflow="fold")
            table.add_column("what it does", ratio=1, overflow="fold")
            for key, action, what in items:
                table.add_row(Text(key), Text(action), Text(what))
            parts.append(table)
        return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close", id="help.close", tooltip="Close the help"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 100%; max-width: 130; height: 100%; max-height: 46;
                            border: thick $primary 60%; background: $surface; padding: 0 1; }
    HelpScreen VerticalScroll { height: 1fr; }
    HelpScreen KeyList { width: 1fr; }
    """

    def __init__(self, scope: str | None = None) -> None:
        super().__init__()
        self.scope = scope

    def compose(self) -> ComposeResult:
        if self.scope is None:  # the screen the help was opened on
            below = [screen for screen in self.app.screen_stack if screen is not self]
            self.scope = screen_scope(below[-1]) if below else ""
        keymap = getattr(self.app, "keymap", {}) or {}
        with Vertical():
            yield Static(
                Content.assemble(
                    ("Keys", "bold"),
                    ("  this screen first · ctrl+p: command palette · esc: close", "$text-muted"),
                ),
                markup=False,
            )
            with VerticalScroll(id="keys-scroll"):
                yield KeyList(help_sections(self.scope, keymap), id="keys")

    def on_mount(self) -> None:
        self.query_one("#keys-scroll").focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
