"""The base of the console's screens: typed access to :class:`canvas_tui.app.CanvasApp`.

Textual types ``Screen.app`` as a plain ``App``, so calls to the console's own methods
(``open_dashboard``, ``run_control``…) would be unchecked; ``self.canvas`` gives the type checker
the real class without importing the app module at run time (it imports the screens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from canvas_tui.app import CanvasApp


class CanvasScreen(Screen[None]):
    """A screen of the console; ``canvas`` is ``app``, typed."""

    #: below the screen's width limit (see :meth:`set_narrow`); None until first laid out
    narrow: bool | None = None

    @property
    def canvas(self) -> CanvasApp:
        return cast("CanvasApp", self.app)

    def set_narrow(self, width: int, limit: int) -> bool:
        """``narrow`` (and the ``-narrow`` class) for a screen ``width`` columns wide, narrow below
        ``limit``; True when that changed it."""
        narrow = 0 < width < limit
        if narrow == self.narrow:
            return False
        self.narrow = narrow
        self.set_class(narrow, "-narrow")
        return True
