"""The foreground follow of ``canvas train`` and ``canvas eval`` (one loop, canvas_tui.commands.follow):
the first Ctrl-C asks the run to stop and keeps following it to its end, a second one leaves it
running. The run is a real detached engine process (tests/engine_stub.py); only the Ctrl-C is
stood in for, raised where the terminal's SIGINT would land: in the wait between polls."""

from __future__ import annotations

import io
import time
import types

import pytest

from tests.console_fixtures import finish, start_stub, wait_running


def ctrl_c_on(monkeypatch: pytest.MonkeyPatch, *calls: int) -> None:
    """Make the follow loop's ``calls``-th waits (1-based) raise KeyboardInterrupt, as Ctrl-C does."""
    from canvas_tui.commands import follow

    count = 0

    def sleep(seconds: float) -> None:
        nonlocal count
        count += 1
        if count in calls:
            raise KeyboardInterrupt
        time.sleep(min(seconds, 0.05))

    monkeypatch.setattr(follow, "time", types.SimpleNamespace(sleep=sleep))


def test_eval_follow_first_ctrl_c_stops_the_run_and_shows_its_end(monkeypatch):
    from canvas_tui.commands.eval import follow

    run = start_stub("ctrl-c-once", 400, 0.05)
    try:
        wait_running(run)
        ctrl_c_on(monkeypatch, 1)
        stream = io.StringIO()
        assert follow(run, stream) == "stopped"
        lines = stream.getvalue().splitlines()
        assert lines[0] == f"stopping eval run {run.id} (Ctrl-C again to leave it running)…"
        assert lines[-1].startswith(f"eval run {run.id} stopped")
    finally:
        finish(run)


def test_train_follow_second_ctrl_c_leaves_the_run_running(monkeypatch, capsys):
    from canvas_tui.commands.train import follow
    from engine.runs import run_status

    run = start_stub("ctrl-c-twice", 400, 5.0)  # a long step: still live when the second Ctrl-C comes
    try:
        wait_running(run)
        ctrl_c_on(monkeypatch, 1, 2)
        assert follow(run, io.StringIO()) == 130
        assert run_status(run, tail=0).is_live
        err = capsys.readouterr().err.splitlines()
        assert err[-2].startswith(f"stopping run {run.id} gracefully (finishing the step")
        assert err[-1] == f"left run {run.id} running in the background: `canvas logs {run.id} -f`."
    finally:
        finish(run)
