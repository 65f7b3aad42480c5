"""The key footer: Textual's :class:`~textual.widgets.Footer`, rebuilt once per burst of binding
changes instead of once per change.

Textual's footer listens to its screen's ``bindings_updated_signal`` and schedules a full rebuild
(every key a new widget, styled as it mounts) for *each* signal. A screen that opens sends several
in a row: the screen resumed, its auto-focused widget focused, and the focus again after the next
refresh. On the Runs screen that was three rebuilds of ten keys before the first paint (with a
fourth from the first scan), about a fifth of the console's start-up CPU. This footer lets the
signals of one refresh cycle share one rebuild: the first schedules it for after the refresh, the
others find it pending; the rebuild reads the bindings when it runs, so it shows the state after
the last of them.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class CanvasFooter(Footer):
    """A :class:`~textual.widgets.Footer` that coalesces the rebuilds a burst of binding changes
    asks for (see the module's docstring). Styled, queried and shown as a ``Footer``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: A rebuild is on its way and has not read the bindings yet: a new change needs no other.
        self.rebuild_pending = False
        self.rebuilds = 0  # rebuilds so far (what a test counts)

    def bindings_changed(self, screen: Screen) -> None:
        if self.rebuild_pending:
            return
        self.rebuild_pending = True
        self.call_after_refresh(self._settled, screen)

    def _settled(self, screen: Screen) -> None:
        """The refresh is over: Footer's own handling, which schedules the rebuild (the conditions
        are those under which it does; otherwise nothing is pending any more)."""
        self.rebuild_pending = bool(screen.app.app_focus and self.is_attached and screen is self.screen)
        super().bindings_changed(screen)

    async def recompose(self) -> None:
        self.rebuild_pending = False
        self.rebuilds += 1
        await super().recompose()
