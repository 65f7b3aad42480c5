"""Crash reports of the console: the traceback of an unhandled exception, saved to a file it names.

Textual catches every exception a handler, a callback or a worker lets out, ends the app with
return code 1 and, as it exits, prints the traceback (rendered by Rich) on the app's
``error_console``. That scrolls away with the terminal (or is lost under tmux), so the console's
error console is a :class:`CrashConsole`: it prints to stderr as before, records, and once the app
has failed it saves what it printed, owner-only, under the log directory (``CANVAS_HOME/logs`` or
the platform's user log directory); ``canvas console`` exits non-zero naming the file. Textual has
no public hook that hands over the exception itself (its one funnel, ``App._handle_exception``, is
private): the report holds the traceback as Textual shows it, with each frame's source lines and
local variables (one more reason the file is the owner's alone). Saving never raises: a report
that cannot be written is reported as such. No torch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from engine.locations import APP_NAME, canvas_home, ensure_private_dir


def crash_dir() -> Path:
    """Where crash reports go: ``CANVAS_HOME/logs``, else the platform's user log directory."""
    home = canvas_home()
    if home is not None:
        return home / "logs"
    import platformdirs

    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def save_crash_text(text: str, *, now: float | None = None) -> Path | None:
    """Write a crash's ``text`` (its traceback), after a header naming the version, the Python and
    the command line, to a new owner-only file; its path, or None when it can't be written."""
    import platform

    from canvas_tui import __version__

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    header = (
        f"Neural Canvas console {__version__} crashed at {stamp}\n"
        f"python {platform.python_version()} on {platform.platform()}\n"
        f"argv: {sys.argv!r}\n\n"
    )
    try:
        folder = ensure_private_dir(crash_dir())
        for n in range(100):
            path = folder / f"console-crash-{stamp}{'' if n == 0 else f'-{n}'}.txt"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as fh:
                fh.write(header + text)
            return path
    except OSError:
        return None
    return None


def crash_summary(text: str) -> str | None:
    """The exception's one line (``Boom: what went wrong``) at the end of a traceback as Rich prints
    it: the lines after the last frame box (its message may run over several lines)."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return None
    ends = [i for i, line in enumerate(lines) if line.startswith("╰")]
    tail = lines[ends[-1] + 1 :] if ends else lines[-1:]
    return " ".join(line for line in tail if line) or None


class CrashConsole(Console):
    """The app's ``error_console``: prints to stderr as Textual's own does, and records. The first
    print once ``failed()`` is true (the app's return code is set) is saved as a crash report:
    :attr:`report` (None when it could not be saved) and :attr:`summary` (the exception's line)."""

    def __init__(self, failed: Callable[[], bool]) -> None:
        super().__init__(markup=False, highlight=False, stderr=True, record=True)
        self.failed = failed
        self.crashed = False
        self.report: Path | None = None
        self.summary: str | None = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*objects, **kwargs)
        if not self.crashed and self.failed():
            self.crashed = True
            text = self.export_text(clear=False)
            self.summary = crash_summary(text)
            self.report = save_crash_text(text)


def crash_message(summary: str | None, report: Path | None) -> str:
    """The one paragraph ``canvas console`` prints after a crash (``summary``: the exception's line)."""
    what = summary or "an unhandled error"
    where = (
        f"The traceback is saved in {report}"
        if report is not None
        else f"The traceback could not be saved under {crash_dir()} (it is printed above)"
    )
    return (
        f"the console crashed ({what}). {where}; please attach it to a bug report. "
        "Runs are not affected: they keep going, and `canvas console` re-attaches to them."
    )
