"""Crash reports of the console: the traceback of an unhandled exception, saved to a file it names.

Textual prints a crash's traceback when the app exits, but that scrolls away with the terminal (or
is lost under tmux); the console also saves it, owner-only, under the log directory
(``CANVAS_HOME/logs`` or the platform's user log directory), and ``canvas console`` exits non-zero
naming the file. Saving never raises: a report that cannot be written is reported as such.
No Textual, no torch.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from pathlib import Path

from engine.locations import APP_NAME, canvas_home, ensure_private_dir


def crash_dir() -> Path:
    """Where crash reports go: ``CANVAS_HOME/logs``, else the platform's user log directory."""
    home = canvas_home()
    if home is not None:
        return home / "logs"
    import platformdirs

    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def save_crash(error: BaseException, *, now: float | None = None) -> Path | None:
    """Write ``error``'s traceback to a new owner-only file; its path, or None when it can't be."""
    from canvas_tui import __version__

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    lines = [
        f"Neural Canvas console {__version__} crashed at {stamp}\n",
        f"python {platform.python_version()} on {platform.platform()}\n",
        f"argv: {sys.argv!r}\n\n",
        *traceback.format_exception(type(error), error, error.__traceback__),
    ]
    try:
        folder = ensure_private_dir(crash_dir())
        for n in range(100):
            path = folder / f"console-crash-{stamp}{'' if n == 0 else f'-{n}'}.txt"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as fh:
                fh.write("".join(lines))
            return path
    except OSError:
        return None
    return None


def crash_message(error: BaseException | None, report: Path | None) -> str:
    """The one paragraph ``canvas console`` prints after a crash."""
    what = f"{type(error).__name__}: {error}" if error is not None else "an unhandled error"
    where = (
        f"The traceback is saved in {report}"
        if report is not None
        else f"The traceback could not be saved under {crash_dir()} (it is printed above)"
    )
    return (
        f"the console crashed ({what}). {where}; please attach it to a bug report. "
        "Runs are not affected: they keep going, and `canvas console` re-attaches to them."
    )
