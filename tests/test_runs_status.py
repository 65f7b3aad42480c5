"""True status: a pid is the run's process only with the recorded start time; dead means crashed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from engine.runs.process import ProcessIdentity, identify, is_alive, send_signal
from engine.runs.status import run_status, summarize
from engine.runs.store import create_run


@pytest.fixture
def sleeper():
    """A live process that is not a run: the stand-in for whoever reuses a pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_identity_matches_only_the_same_process(sleeper):
    me = identify(sleeper.pid)
    assert me is not None and is_alive(me)
    assert me.start_ticks is not None and me.boot_id  # Linux: exact identity
    later_process = ProcessIdentity(sleeper.pid, me.start_time + 3600, me.start_ticks + 360_000, me.boot_id)
    assert not is_alive(later_process)
    other_boot = ProcessIdentity(sleeper.pid, me.start_time, me.start_ticks, "another-boot")
    assert not is_alive(other_boot)
    # Without /proc detail (macOS): start time compared with a tolerance.
    assert is_alive(ProcessIdentity(sleeper.pid, me.start_time))
    assert not is_alive(ProcessIdentity(sleeper.pid, me.start_time - 7200))
    assert not is_alive(ProcessIdentity(sleeper.pid))  # a bare pid proves nothing
    assert not send_signal(later_process, 9)
    assert sleeper.poll() is None  # the stranger was not signalled


def test_a_zombie_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    me = identify(proc.pid)
    deadline = time.monotonic() + 30
    while is_alive(me) and time.monotonic() < deadline:  # exited but not reaped: a zombie
        time.sleep(0.02)
    assert not is_alive(me)
    proc.wait()


def _running_run(identity: ProcessIdentity, **extra):
    run = create_run("pretrain")  # run names are unique; this helper makes several
    run.update_meta(status="running", **identity.as_meta(), **extra)
    run.log_path.write_text("step 1\nstep 2\nKilled\n")
    return run


def test_reused_pid_with_another_start_time_is_not_the_run_alive(sleeper):
    real = identify(sleeper.pid)
    assert run_status(_running_run(real)).state == "running"
    # The run's process died and the kernel gave its pid to `sleeper`: the recorded start time is
    # the old process's, so it does not match.
    reused = _running_run(
        ProcessIdentity(sleeper.pid, real.start_time - 1000, real.start_ticks - 100_000, real.boot_id)
    )
    status = run_status(reused)
    assert status.state == "crashed" and not status.alive
    assert status.log_tail[-1] == "Killed"
    reused_after_reboot = _running_run(ProcessIdentity(sleeper.pid, real.start_time - 1000))
    assert run_status(reused_after_reboot).state == "crashed"


def test_a_gone_process_is_crashed_and_final_states_are_trusted():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = identify(proc.pid)
    proc.wait()
    run = _running_run(gone)
    status = run_status(run, tail=2)
    assert status.state == "crashed" and status.log_tail == ["step 2", "Killed"]
    assert "without a final status" in status.message
    run.update_meta(status="failed", message="RuntimeError: boom")
    status = run_status(run)
    assert (status.state, status.message) == ("failed", "RuntimeError: boom") and status.log_tail
    run.update_meta(status="finished", message="")
    assert run_status(run).state == "finished" and run_status(run).log_tail == []
    assert run_status(create_run("pretrain")).state == "created"


def test_a_run_on_another_host_is_reported_unverified():
    run = _running_run(
        ProcessIdentity(os.getpid(), 1.0, 1, "boot-of-another-machine"),
        host=socket.gethostname() + "-elsewhere",
    )
    status = run_status(run)
    assert status.state == "running" and not status.verified
    assert summarize(run).verified is False


def test_summary_reads_latest_numbers():
    run = create_run("pretrain", "numbers")
    from engine.runs.session import EventWriter

    with EventWriter(run.events_path) as w:
        w.emit("run_info", total_steps=50)
        w.emit("metric", step=7, loss=2.5, tokens_per_s=1234.0)
    s = summarize(run)
    assert (s.name, s.kind, s.status, s.step, s.total_steps, s.loss, s.tokens_per_s) == (
        "numbers",
        "pretrain",
        "created",
        7,
        50,
        2.5,
        1234.0,
    )
    assert s.age_s is not None and s.age_s < 3600
