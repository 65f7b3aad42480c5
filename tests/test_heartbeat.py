"""The heartbeat (engine.runs.heartbeat) and the status it gives: a stopped engine is "not progressing",
a run on another host is judged by its heartbeat, never by a local pid lookup (issues 16 and 18)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import stat
import time
from datetime import datetime, timezone

import pytest

from canvas_tui.control import perform
from engine.runs import control
from engine.runs.heartbeat import HEARTBEAT_FILE, INTERVAL_ENV, Heartbeat, read_heartbeat, write_heartbeat
from engine.runs.process import ProcessIdentity, is_alive
from engine.runs.status import ALL_STATES, LIVE_STATES, run_status, summarize
from engine.runs.store import create_run
from tests.engine_stub import engine_argv
from tests.lifecycle_helpers import canvas, finish
from tests.waiting import wait_until

OTHER = socket.gethostname() + "-compute-7"


def test_a_stopped_engine_is_not_progressing_and_stop_says_how_to_go_on(monkeypatch):
    """A real engine (tests/engine_stub.py in run_context) beats; kill -STOP silences it: status stays
    running but says "not progressing since", `canvas stop` says it is not responding and how to go
    on; after SIGCONT it honours the stop and ends stopped."""
    monkeypatch.setenv(INTERVAL_ENV, "0.2")
    run = create_run("pretrain")
    pid = control.launch_detached(run, engine_argv(run.path, 400, 0.05, "--checkpoint-every", "0"))
    try:
        beat = wait_until(
            lambda: (b := read_heartbeat(run.path)) is not None and b.step is not None and b.step >= 2 and b,
            what="a heartbeat with a step",
            timeout=60,
        )
        meta = run.read_meta()
        assert (beat.pid, beat.host, beat.interval_s) == (meta.pid, socket.gethostname(), 0.2)
        assert beat.progress_t is not None and beat.gap_s is not None and beat.gap_s < 5
        assert stat.S_IMODE(os.stat(run.path / HEARTBEAT_FILE).st_mode) == 0o600
        assert run_status(run).responsive and "not progressing" not in run_status(run).message
        os.kill(meta.pid, signal.SIGSTOP)
        status = wait_until(
            lambda: (s := run_status(run)).message.startswith("not progressing since") and s,
            what="the stopped engine to read as not progressing",
            timeout=30,
        )
        assert status.state == "running" and status.is_live and not status.responsive
        assert f"`kill -CONT {meta.pid}`" in status.message and "no heartbeat for" in status.message
        said = perform("stop", run.path)  # the console's stop says the same
        assert said.startswith(f"Run {meta.name} is not responding (not progressing since"), said
        out = canvas("stop", run.id)
        assert out.returncode == 0, out.stderr
        assert f"Run {run.id} is not responding" in out.stdout
        assert f"`kill -CONT {meta.pid}`" in out.stdout and f"`canvas stop --force {run.id}`" in out.stdout
        assert run_status(run).state == "running"  # nothing happens while it is stopped
        os.kill(meta.pid, signal.SIGCONT)
        ended = finish(run, 60)
        assert ended.state == "stopped"
    finally:  # never leave a stopped process behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        control.kill_run(run)


def test_stop_force_ends_a_stopped_engine_now_and_records_why(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0.2")
    run = create_run("pretrain")
    control.launch_detached(run, engine_argv(run.path, 400, 0.05, "--checkpoint-every", "0"))
    wait_until(
        lambda: run_status(run).state == "running" and read_heartbeat(run.path), what="running", timeout=60
    )
    pid = run.read_meta().pid
    os.kill(pid, signal.SIGSTOP)
    out = canvas("stop", "--force", run.id)
    assert out.returncode == 0, out.stderr
    status = run_status(run)
    assert status.state == "stopped" and "canvas stop --force" in status.message
    assert f"Run {run.id} stopped" in out.stdout
    assert not is_alive(ProcessIdentity.from_meta(run.read_meta()))


def _remote_run(age_s: float | None, pid: int = 4242):
    """A run whose run.json says another host runs it (pid `pid` there); a heartbeat `age_s` old."""
    run = create_run("pretrain")
    started = datetime.fromtimestamp(time.time() - 3600, timezone.utc).isoformat()
    run.update_meta(status="running", host=OTHER, pid=pid, boot_id="boot-of-compute-7", started=started)
    if age_s is not None:
        write_heartbeat(run.path, Heartbeat(t=time.time() - age_s, host=OTHER, pid=pid, interval_s=3.0))
    return run


def test_a_run_on_another_host_is_running_or_unresponsive_by_its_heartbeat():
    # The pid recorded for the other host is alive *here* (this process): never consulted.
    fresh = _remote_run(1.0, pid=os.getpid())
    status = run_status(fresh)
    assert (status.state, status.verified, status.alive, status.remote) == ("running", True, True, True)
    assert status.message.startswith(f"on host {OTHER}, heartbeat")
    stale = _remote_run(600.0, pid=os.getpid())
    status = run_status(stale)
    assert status.state == "unresponsive" and status.is_live and not status.responsive
    assert status.message.startswith("unresponsive since") and "(no heartbeat for 600 s)" in status.message
    assert status.host == OTHER
    assert "unresponsive" in ALL_STATES and "unresponsive" in LIVE_STATES
    # A dead pid on the other host is not "crashed" from here either.
    assert run_status(_remote_run(600.0, pid=999_999)).state == "unresponsive"
    assert run_status(_remote_run(1.0, pid=999_999)).state == "running"
    # A beat left by another engine (an earlier attempt, another pid) says nothing about this one.
    old = _remote_run(None)
    write_heartbeat(old.path, Heartbeat(t=time.time(), host=OTHER, pid=17, interval_s=3.0))
    assert not run_status(old).verified
    # The CLI says the same, with the host.
    rows = {r["id"]: r for r in json.loads(canvas("runs", "--json").stdout)}
    assert rows[stale.id]["status"] == "unresponsive" and rows[stale.id]["host"] == OTHER
    assert rows[fresh.id]["status"] == "running"
    out = canvas("status", stale.id)
    assert "status      unresponsive since" in out.stdout and f"on {OTHER}" in out.stdout
    assert summarize(stale).status == "unresponsive"
    info = json.loads(canvas("status", stale.id, "--json").stdout)
    assert (info["status"], info["remote"], info["responsive"], info["host"]) == (
        "unresponsive",
        True,
        False,
        OTHER,
    )
    assert info["heartbeat_age_s"] == pytest.approx(600, abs=30)


def test_stop_on_another_host_uses_the_control_file_only():
    run = _remote_run(1.0, pid=os.getpid())  # were this pid signalled, this test would end
    out = canvas("stop", run.id)
    assert out.returncode == 0, out.stderr
    assert f"on host {OTHER} through its control file" in out.stdout
    assert (run.control_dir / "stop").is_file()
    forced = canvas("stop", "--force", run.id)
    assert forced.returncode == 2 and f"runs on host {OTHER}" in forced.stderr


@pytest.mark.parametrize(
    ("progress_ago", "gap", "longest", "stalled"),
    [
        (700.0, 1.0, 5.0, True),
        (100.0, 1.0, 5.0, False),
        (700.0, 1.0, 400.0, False),
        (1500.0, 60.0, 60.0, True),
        (1100.0, 60.0, 60.0, False),
    ],
)
def test_a_beating_engine_whose_loop_stopped_is_not_progressing(progress_ago, gap, longest, stalled):
    """The stall rule is conservative: at least STALL_MIN_S, 20x the usual step, 2x the longest gap."""
    now = time.time()
    beat = Heartbeat(
        t=now, host="h", pid=1, step=120, progress_t=now - progress_ago, gap_s=gap, longest_gap_s=longest
    )
    assert (beat.stalled_since(now) is not None) is stalled
    if stalled:
        run = _remote_run(None)
        write_heartbeat(run.path, dataclasses.replace(beat, host=OTHER, pid=4242))
        status = run_status(run, now=now)
        assert status.state == "running" and not status.responsive
        assert "not progressing since" in status.message and "last step 120" in status.message
    # Before its first step nothing is concluded, however long it takes.
    assert Heartbeat(t=now, host="h", pid=1, progress_t=now - 5000, gap_s=1.0).stalled_since(now) is None


def test_a_silent_engine_on_another_host_can_be_marked_stopped_and_removed():
    run = _remote_run(600.0, pid=os.getpid())
    out = canvas("stop", "--force", run.id)
    assert out.returncode == 0, out.stderr
    meta = run.read_meta()
    assert meta.status == "stopped" and (run.control_dir / "stop").is_file()  # if alive after all, it stops
    assert f"its engine on host {OTHER} was unresponsive since" in meta.message
    assert f"Run {run.id} stopped: marked stopped by `canvas stop --force`" in out.stdout
    gone = _remote_run(600.0)
    out = canvas("rm", "--force", "--timeout", "0.2", gone.id)
    assert out.returncode == 0, out.stderr
    assert not gone.path.exists()
    kept = _remote_run(1.0)  # beating: it reads its control file; nothing here can end it sooner
    out = canvas("rm", "--force", "--timeout", "0.2", kept.id)
    assert out.returncode == 2 and f"on host {OTHER}); not deleting it" in out.stderr
    assert kept.path.exists() and (kept.control_dir / "stop").is_file()
