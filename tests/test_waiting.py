"""The suite's two wait helpers: they return what they waited for, and fail by name at the deadline."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.waiting import pilot_wait_until, wait_until


def test_wait_until_returns_the_first_truthy_value():
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "ready", 5, what="the counter") == "ready"


def test_wait_until_fails_at_the_deadline_naming_what_it_waited_for():
    started = time.monotonic()
    with pytest.raises(
        pytest.fail.Exception, match=r"timed out after 0.2 s waiting for the flag \(last value: 0\)"
    ):
        wait_until(lambda: 0, 0.2, what="the flag")
    assert 0.2 <= time.monotonic() - started < 5


class FakePilot:
    """Counts the pauses (the app gets a turn between polls) and the exits asked at a deadline."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.exits = 0
        self.app = self

    def exit(self) -> None:
        self.exits += 1

    async def pause(self, delay: float) -> None:
        self.pauses.append(delay)
        await asyncio.sleep(delay)


def test_pilot_wait_until_pauses_the_app_between_polls_and_fails_by_name():
    pilot = FakePilot()
    counter = itertools.count()
    assert (
        asyncio.run(pilot_wait_until(pilot, lambda: next(counter) == 2, 5, what="x", interval=0.01)) is True
    )
    assert pilot.pauses == [0.01, 0.01]
    assert pilot.exits == 0
    failing = FakePilot()
    with pytest.raises(pytest.fail.Exception, match="waiting for the dashboard"):
        asyncio.run(pilot_wait_until(failing, lambda: None, 0.1, what="the dashboard"))
    assert failing.exits == 1  # the app is told to exit, so a snapshot's run_before cannot hang
