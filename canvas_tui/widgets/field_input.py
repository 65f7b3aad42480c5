"""A form's text field whose keystrokes repaint the field only, never re-lay out the screen.

Textual's :class:`~textual.widgets.Input` records the width of its text as its ``virtual_size`` on
every change, and ``Widget.virtual_size`` is a reactive declared with ``layout=True``: each
keystroke asked for a layout of the whole screen (the New run form: ~100 widgets placed again,
then repainted, 7-8 ms of a 10 ms keystroke). An input's own size never depends on its text while
its width is not ``auto`` (Input then asks for the layout itself, in ``_watch_value``), and the
input reads its scroll limits from ``virtual_size`` directly, so :class:`FieldInput` keeps the
reactive without the layout. The console's form fields use it; they are ``width: 1fr`` or fixed.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Input


class FieldInput(Input):
    """:class:`Input` whose typing repaints the field only (no screen layout per keystroke)."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)
