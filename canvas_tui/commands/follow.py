"""The foreground of a run started from the command line (``canvas train``, ``canvas finetune``,
``canvas eval``, ``canvas serve``): what its preflight found, then its events until it ends.

One loop for all of them (:func:`follow_events`): poll the run's status and events, hand each event
to the command's view; the first Ctrl-C asks the run to stop and keeps following, so the end of
the run is still shown; a second one leaves it running. The command says what each of those
means for its kind of run. Torch-free.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

POLL_S = 0.25


def show_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"canvas: warning: {warning}", file=sys.stderr, flush=True)


def show_checked(checked: Any) -> None:
    """A preflight's one-paragraph summary and its warnings, on stderr."""
    print(checked.summary(), file=sys.stderr, flush=True)
    show_warnings(checked.warnings)


def follow_events(
    run_dir: Any,
    handle: Callable[[Any], None],
    *,
    stop: Callable[[], None],
    detach: Callable[[], None],
    poll_s: float = POLL_S,
) -> Any | None:
    """Pass every event of ``run_dir`` to ``handle`` until the run is no longer live.

    The first Ctrl-C (while waiting for more events) calls ``stop`` (say so, ask the run to stop)
    and goes on following; a second one, or one during ``stop``, calls ``detach`` (say the run is
    left running). Returns the :class:`~engine.runs.EventReader` when the run ended (its
    ``skipped`` count of unreadable lines is for the caller to report), None when detached.
    A :class:`~engine.runs.errors.RunStoreError` (the run deleted meanwhile) propagates."""
    from engine.runs import EventReader, run_status

    reader = EventReader(run_dir.events_path, 0)
    stopping = False
    try:
        while True:
            ended = not run_status(run_dir, tail=0).is_live
            for event in reader.read_events():
                handle(event)
            if ended:
                return reader
            try:
                time.sleep(poll_s)
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                stop()
    except KeyboardInterrupt:
        detach()
        return None


def log_tail_text(status: Any) -> str:
    """``status``'s last lines of engine.log, each behind ``| `` and made displayable; empty when
    the run did not fail or crash, or left no log."""
    from engine.runs.format import plain

    if status.state not in ("failed", "crashed") or not getattr(status, "log_tail", None):
        return ""
    return "last lines of engine.log:\n" + "\n".join(f"| {plain(line)}" for line in status.log_tail)
