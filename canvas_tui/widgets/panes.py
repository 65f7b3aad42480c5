"""Shared base for the small text panes: a bordered Static that renders :class:`Content` only.

Content objects are never parsed as markup, so text from runs (names, paths, reasons) shows
literally (STYLE.md §7).
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

LEVEL_STYLE = {"low": "$text-muted", "mid": "$success", "high": "$warning", "none": "$text-muted"}


class Pane(Static):
    DEFAULT_CSS = """
    Pane {
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        padding: 0 1;
        height: auto;
    }
    """

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(Content(""), id=id, classes=classes, markup=False)
        self.border_title = title

    @property
    def text(self) -> str:
        """The plain text shown (for tests and screen readers)."""
        return str(self.content)


def label(text: str, width: int = 7) -> tuple[str, str]:
    return (text.ljust(width), "$text-muted")
