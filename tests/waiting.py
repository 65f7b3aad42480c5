"""Waiting for a condition in a test: one sync and one async helper, both with a deadline.

Every wait in the suite goes through these two, so none can spin forever and every timeout says
what was awaited (and the last value seen), instead of a bare ``assert`` or a hung CI job. They
import neither torch nor textual: the console tests and the engine tests share them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last: object) -> None:
    pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last value: {last!r:.300})")


def wait_until(
    predicate: Callable[[], T], timeout: float = 120.0, what: str = "condition", interval: float = 0.02
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail the test at the
    deadline. The predicate runs at least once, even with a zero timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            _timed_out(what, timeout, value)
        time.sleep(interval)


async def pilot_wait_until(
    pilot: Any,
    predicate: Callable[[], T],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    """The same for a Textual Pilot test: ``await pilot.pause(interval)`` between polls, so the app
    keeps processing messages while the test waits. (30 s by default: a passing wait costs nothing
    more, and two test processes on 2 loaded cores need it.) At the deadline the app is told to
    exit before the test fails: a snapshot's ``run_before`` that raises would otherwise leave the
    app running until the per-test timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pilot.app.exit()
            _timed_out(what, timeout, value)
        await pilot.pause(interval)
