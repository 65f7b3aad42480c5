"""Real engine processes: detached launch, surviving tmux, stop, checkpoint now, kill -9, resume, rm.

The engine is the :func:`engine` fixture: ``tests/engine_stub.py``, a real process using the real
engine-side helpers with sleeps for steps, which makes these run-store tests fast and lets them
fail on purpose (a slow start, an exception). The same behaviours with the real tiny training run
started through ``canvas train`` (tmux survival, kill -9 and resume, SIGUSR1, stop) are in
``tests/test_train_lifecycle.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from engine.runs import control
from engine.runs.reader import EventReader
from engine.runs.status import run_status
from engine.runs.store import RunDir, create_run, list_runs
from tests.helpers import in_tmux_then_kill_it, wait_until

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "tests" / "engine_stub.py"
STEP_TIME = 0.05


@dataclass(frozen=True)
class Engine:
    """How the tests start an engine. ``argv`` is the engine command for an existing run
    directory; ``shell_start`` starts a run the way a user does from a terminal (create, launch
    detached, follow its logs) and is what runs inside tmux."""

    kind: str
    argv: Callable[..., list[str]]
    shell_start: Callable[[str, int], list[str]]


@pytest.fixture
def engine() -> Engine:
    """The engine under test: the stub today, the real tiny training run once it exists."""

    def argv(run: RunDir, steps: int, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(STUB),
            str(run.path),
            "--steps",
            str(steps),
            "--step-time",
            str(STEP_TIME),
            *extra,
        ]

    def shell_start(name: str, steps: int) -> list[str]:
        return [
            sys.executable,
            str(STUB),
            "start",
            "--name",
            name,
            "--steps",
            str(steps),
            "--step-time",
            str(STEP_TIME),
            "--follow",
        ]

    return Engine("pretrain", argv, shell_start)


def canvas(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=timeout,
    )


def events(run: RunDir) -> list[dict]:
    reader = EventReader(run.events_path)
    records = reader.read_new()
    assert reader.garbage == 0
    return records


def steps_of(run: RunDir) -> list[int]:
    return [r["step"] for r in events(run) if r["type"] == "metric"]


def last_step(run: RunDir) -> int:
    steps = steps_of(run)
    return steps[-1] if steps else 0


def launch(engine: Engine, steps: int, *extra: str, name: str | None = None) -> RunDir:
    run = create_run(engine.kind, name)
    control.launch_detached(run, engine.argv(run, steps, *extra))
    return run


def finish(run: RunDir, timeout: float = 60.0):
    status = control.wait_for_end(run, timeout)
    assert not status.is_live, f"run still {status.state} after {timeout} s"
    return status


def test_a_detached_run_finishes_with_all_its_events(engine):
    run = launch(engine, 8)
    meta = run.read_meta()
    assert meta.pid and meta.pid_start_time and meta.status in ("starting", "running")
    proc = psutil.Process(meta.pid)
    assert os.getsid(proc.pid) == proc.pid  # leads its own session: no terminal to lose
    status = finish(run)
    assert status.state == "finished", status
    records = events(run)
    assert [r["state"] for r in records if r["type"] == "status"] == ["running", "finished"]
    assert [r["step"] for r in records if r["type"] == "metric"] == list(range(1, 9))
    assert records[-1]["type"] == "status" and any(r["type"] == "checkpoint" for r in records)
    assert "done" in run.log_path.read_text()
    meta = run.read_meta()
    assert meta.total_steps == 8 and meta.ended and meta.resume_argv


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_run_started_in_tmux_survives_killing_the_tmux_server(engine, tmp_path):
    steps = 40

    def ready():
        run = next(iter(list_runs()), None)
        return run if run is not None and last_step(run) >= 3 else None

    run = in_tmux_then_kill_it(engine.shell_start("in-tmux", steps), tmp_path, ready, REPO)
    assert last_step(run) < steps, "the run ended before the terminal was killed: make it longer"
    assert run_status(run).state == "running"
    # ...and the run goes on to the end with every event.
    assert finish(run).state == "finished"
    assert steps_of(run) == list(range(1, steps + 1))


def test_sighup_is_ignored_sigusr1_checkpoints_and_sigterm_stops(engine):
    run = launch(engine, 400, "--checkpoint-every", "0")
    wait_until(lambda: last_step(run) >= 2, what="two steps")
    os.kill(run.read_meta().pid, signal.SIGHUP)
    control.request_checkpoint(run)
    wait_until(
        lambda: any(r["type"] == "checkpoint" and r["kind"] == "step" for r in events(run)),
        what="the requested checkpoint",
    )
    assert run_status(run).state == "running"
    step_before = last_step(run)
    status = control.stop_run(run, wait=True, timeout=30)
    assert status.state == "stopped" and "SIGTERM" in status.message
    assert step_before <= last_step(run) < 400
    saved = json.loads((run.checkpoints_dir / "stub-state.ckpt").read_text())["step"]
    assert saved == last_step(run)  # the engine checkpointed the step it stopped at


def test_stop_by_control_file_alone(engine):
    """For a console that cannot signal the engine (another host on a shared run store)."""
    run = launch(engine, 400)
    wait_until(lambda: last_step(run) >= 1, what="a step")
    run.control_dir.mkdir(exist_ok=True)
    (run.control_dir / "stop").write_text("")
    status = finish(run)
    assert status.state == "stopped" and "control file" in status.message


def test_stop_while_the_engine_is_still_starting_is_not_lost():
    """``canvas stop`` during a slow start (importing torch) must neither kill the engine before it
    can record anything nor be forgotten: it is honoured at the first step. Stub-specific (delay)."""
    run = create_run("pretrain")
    control.launch_detached(
        run,
        [
            sys.executable,
            str(STUB),
            str(run.path),
            "--steps",
            "400",
            "--step-time",
            "0.01",
            "--startup-delay",
            "0.5",
        ],
    )
    assert run_status(run).state == "starting"
    control.stop_run(run)
    status = finish(run)
    assert status.state == "stopped", status
    assert 1 <= last_step(run) < 400


def test_kill_9_reads_as_crashed_with_the_log_tail_and_resume_continues(engine):
    steps = 30
    run = launch(engine, steps, "--checkpoint-every", "5")
    wait_until(lambda: last_step(run) >= 7, what="a checkpoint and two more steps")
    pid = run.read_meta().pid
    subprocess.run(["kill", "-9", str(pid)], check=True)
    status = finish(run)
    assert status.state == "crashed" and str(pid) in status.message
    assert any(line.startswith("step ") for line in status.log_tail)
    out = canvas("status", run.id[:-3])
    assert out.returncode == 0 and "crashed" in out.stdout and "Last " in out.stdout
    assert f"canvas resume {run.id}" in out.stdout
    crashed_at = last_step(run)
    checkpointed = json.loads((run.checkpoints_dir / "stub-state.ckpt").read_text())["step"]
    assert 5 <= checkpointed <= crashed_at < steps

    out = canvas("resume", run.id)
    assert out.returncode == 0, out.stderr
    assert finish(run).state == "finished"
    steps_seen = steps_of(run)
    second = steps_seen[crashed_at:]
    assert second == list(range(checkpointed + 1, steps + 1))  # resumed from the checkpoint
    assert run.read_meta().attempts == 2
    states = [r["state"] for r in events(run) if r["type"] == "status"]
    assert states == ["running", "running", "finished"]


def test_a_failure_is_recorded_with_its_message_and_traceback():
    """run_context itself, so it uses the stub directly rather than the engine fixture."""
    run = create_run("pretrain")
    control.launch_detached(
        run,
        [sys.executable, str(STUB), str(run.path), "--steps", "5", "--step-time", "0.01", "--fail-at", "3"],
    )
    status = finish(run)
    assert status.state == "failed"
    assert status.message == "RuntimeError: stub engine failed on purpose at step 3"
    assert any("Traceback" in line for line in run.log_path.read_text().splitlines())
    assert "Traceback" in run.read_meta().traceback
    assert events(run)[-1] == {**events(run)[-1], "type": "status", "state": "failed"}


def test_cli_logs_follow_exits_when_the_run_ends(engine):
    run = launch(engine, 12, name="followed")
    out = canvas("logs", "followed", "-f", "-n", "1000")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for step in range(1, 13):
        assert any(f"step {step}/12" in line for line in lines), step
        assert f"| step {step} loss" in out.stdout
    assert lines[-1] == f"--- run {run.id} finished"


def test_cli_stop_resume_and_rm(engine):
    run = launch(engine, 400, name="controlled")
    wait_until(lambda: last_step(run) >= 1, what="a step")

    out = canvas("runs")
    assert out.returncode == 0 and "controlled" in out.stdout and "running" in out.stdout
    out = canvas("resume", "controlled")
    assert out.returncode == 2 and "running" in out.stderr
    out = canvas("rm", "controlled")
    assert out.returncode == 2 and "canvas stop" in out.stderr and run.path.exists()

    out = canvas("stop", "controlled", "--wait")
    assert out.returncode == 0, out.stderr
    assert "stopped" in out.stdout and run_status(run).state == "stopped"
    out = canvas("stop", "controlled")
    assert out.returncode == 2 and "not running" in out.stderr

    out = canvas("resume", "controlled")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: run_status(run).state == "running", what="the resumed run")
    pid = run.read_meta().pid
    out = canvas("rm", "--force", "controlled")
    assert out.returncode == 0, out.stderr
    assert not run.path.exists()
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        what="the engine to exit",
    )
