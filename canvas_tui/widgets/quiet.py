"""Cheap pane updates for a live dashboard: skip what did not change, relayout only when needed.

``Static.update`` re-lays out the whole screen by default (a pane's height might change), which
costs far more than repainting the pane: the dashboard's telemetry panes change their numbers
every second but almost never their number of lines. :func:`update_pane` skips an update whose
text and styles are those already shown, and asks for a layout only when the line count changed or
a line does not fit the pane's width (it would wrap, changing the height).
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.content import Content
from textual.widgets import Static


def update_pane(widget: Static, content: Content) -> bool:
    """Show ``content`` in ``widget``; False when it was already shown (nothing done)."""
    key = (content.plain, tuple(content.spans))
    if key == getattr(widget, "_quiet_key", None):
        return False
    lines = content.plain.split("\n")
    width = widget.content_size.width
    fits = width > 0 and all(cell_len(line) <= width for line in lines)
    same_shape = fits and getattr(widget, "_quiet_shape", None) == (len(lines), width)
    widget._quiet_key = key  # type: ignore[attr-defined]
    widget._quiet_shape = (len(lines), width) if fits else None  # type: ignore[attr-defined]
    widget.update(content, layout=not same_shape)
    return True
