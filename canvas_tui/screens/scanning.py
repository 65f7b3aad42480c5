"""A screen that lists what the run store holds, rescanned off the UI thread (the Runs and the
Evaluation screens).

A thread worker runs the screen's :meth:`ScanningScreen.scan_store` and posts the message it
returns; the screen's handler for that message calls :meth:`ScanningScreen.scan_applied` and
draws. The next scan is armed with ``set_timer`` only once the previous one was applied, so scans
never overlap or queue up (STYLE.md §3), and a screen covered by another one stops scanning until
it is shown again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.message import Message

from canvas_tui.screens.base import CanvasScreen


class ScanningScreen(CanvasScreen):
    """The scan loop; subclasses set :attr:`SCAN_GROUP` and implement :meth:`scan_store`."""

    SCAN_GROUP: ClassVar[str] = "scan"

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0  # scans applied so far (tests wait on it)
        self._scan_pending = False  # a scan runs, or its result waits for the handler

    def scan_store(self, cancelled: Callable[[], bool]) -> Message:
        """Read the store (in the worker thread; never touch a widget here) and return the message
        that carries what was found. ``cancelled()`` turns true when a newer scan replaced this one."""
        raise NotImplementedError

    def scan(self) -> None:
        """Scan now, unless a scan is already on its way."""
        if self._scan_pending:
            return
        self._scan_pending = True
        self.run_worker(self._scan, thread=True, exclusive=True, exit_on_error=False, group=self.SCAN_GROUP)

    def _scan(self) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        message = self.scan_store(lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(message)

    def scan_applied(self) -> None:
        """Count the scan just received and arm the next one (call from the message's handler)."""
        self._scan_pending = False
        self.scans += 1
        self.set_timer(self.canvas.poll_interval, self._rearm)

    def _rearm(self) -> None:
        # Not `is_current`: Textual counts the screen just below the top one as current (it may show
        # through), so a covered screen rescanned every poll and each redraw repainted the top one.
        if self.app.screen is self:
            self.scan()
        else:  # covered by another screen: check again later, scan on return (on_screen_resume)
            self._scan_pending = False

    def on_screen_resume(self) -> None:
        self.scan()
