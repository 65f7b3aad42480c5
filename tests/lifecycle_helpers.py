"""Driving real runs through the `canvas` command and reading what they wrote (lifecycle tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TypeVar

from engine.runs import control
from engine.runs.events import Event
from engine.runs.reader import EventReader
from engine.runs.store import RunDir

REPO = Path(__file__).resolve().parents[1]
E = TypeVar("E", bound=Event)


def canvas(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``canvas ARGS`` in a real subprocess, with this test's environment (its CANVAS_HOME)."""
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=timeout,
    )


def events(run: RunDir, kind: str | None = None) -> list[dict]:
    reader = EventReader(run.events_path)
    records = reader.read_new()
    assert reader.garbage == 0
    return [r for r in records if kind is None or r["type"] == kind]


def typed_events(run: RunDir, cls: type[E]) -> list[E]:
    """The run's decoded events of class ``cls`` (engine.runs.events), every line readable."""
    reader = EventReader(run.events_path)
    found = [e for e in reader.read_events() if isinstance(e, cls)]
    assert reader.skipped == 0
    return found


def last_step(run: RunDir) -> int:
    return max((m["step"] for m in events(run, "metric")), default=0)


def finish(run: RunDir, timeout: float = 240.0):
    status = control.wait_for_end(run, timeout)
    assert not status.is_live, f"run still {status.state} after {timeout} s"
    return status
