"""A SLURM run's status follows its job (squeue, then sacct), combined with the heartbeat; `canvas stop`
asks the engine through its control file and falls back to scancel (issue 18).

SLURM cannot run here: ``tests/slurm_standins.py`` puts stand-in ``squeue``/``sacct``/``scancel`` on
PATH that answer in SLURM's documented formats and record how they were called.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from engine.cluster import slurm_status
from engine.runs import control
from engine.runs.heartbeat import Heartbeat, write_heartbeat
from engine.runs.status import run_status
from engine.runs.store import create_run
from tests import slurm_standins as standins
from tests.engine_stub import engine_argv
from tests.lifecycle_helpers import canvas, finish
from tests.waiting import wait_until

OTHER = "node-7"
JOB = "4242"
SQUEUE_ARGV = ["--noheader", f"--jobs={JOB}", "--format=%i|%T|%r|%N"]
SACCT_ARGV = [f"--jobs={JOB}", "--allocations", "--noheader", "--parsable2", "--format=JobID,State,ExitCode"]


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """Stand-in SLURM commands first on PATH, a fresh answer cache."""
    bin_dir = standins.cluster(tmp_path / "slurm-bin")
    monkeypatch.setenv("PATH", standins.path_with(bin_dir))
    slurm_status.clear_cache()
    yield bin_dir
    slurm_status.clear_cache()


def slurm_run(
    status: str = "created", *, remote: bool = False, beat_age: float | None = None, message: str = ""
):
    """A run submitted as SLURM job JOB; ``remote``: its engine took it over on OTHER (pid 4242)."""
    run = create_run("pretrain")
    fields: dict = {"slurm_job_id": JOB, "status": status, "message": message}
    if remote:
        started = datetime.fromtimestamp(time.time() - 3600, timezone.utc).isoformat()
        fields.update(host=OTHER, pid=4242, boot_id="boot-of-node-7", started=started)
    run.update_meta(**fields)
    if beat_age is not None:
        write_heartbeat(run.path, Heartbeat(t=time.time() - beat_age, host=OTHER, pid=4242, interval_s=3.0))
    return run


# fmt: off
CASES = [
    # run.json says, heartbeat age, squeue "STATE|reason", sacct "STATE|exit" -> state, message
    ("created", None, "PENDING|Priority", None, "queued", f"SLURM job {JOB} PENDING (Priority)"),
    ("created", None, "RUNNING|None", None, "starting", "RUNNING on node-7: the engine is starting"),
    ("running", 1.0, "RUNNING|None", None, "running", f"on host {OTHER}, heartbeat"),
    ("running", None, "RUNNING|None", None, "running", f"SLURM job {JOB} RUNNING on node-7"),
    ("running", 600.0, "RUNNING|None", None, "unresponsive", "unresponsive since"),
    ("running", 600.0, "PENDING|BeginTime", None, "queued", "requeued; it continues from its last"),
    ("running", 600.0, None, "TIMEOUT|0:0", "crashed", f"SLURM job {JOB} ended TIMEOUT before"),
    ("running", 600.0, None, "CANCELLED by 1000|0:15", "stopped", "cancelled (CANCELLED by 1000, exit 0:15)"),
    ("running", 600.0, None, "FAILED|1:0", "crashed", "ended FAILED, exit 1:0"),
    ("running", 600.0, None, "NODE_FAIL|0:0", "crashed", "ended NODE_FAIL"),
    ("running", 600.0, None, "OUT_OF_MEMORY|0:125", "crashed", "ended OUT_OF_MEMORY, exit 0:125"),
    ("running", 600.0, None, "COMPLETED|0:0", "crashed", "completed, but the engine recorded no end"),
    ("created", None, None, "CANCELLED by 1000|0:15", "stopped", "was cancelled"),
]
# fmt: on


@pytest.mark.parametrize(("recorded", "beat", "squeue", "sacct", "state", "text"), CASES)
def test_a_slurm_run_follows_its_job(slurm, recorded, beat, squeue, sacct, state, text):
    queue, reason = squeue.split("|") if squeue else (None, "")
    account, exit = sacct.split("|") if sacct else (None, "0:0")
    standins.set_job(
        slurm, JOB, queue, account, reason=reason, nodes=OTHER if queue == "RUNNING" else "", exit=exit
    )
    run = slurm_run(recorded, remote=recorded == "running", beat_age=beat)
    status = run_status(run)
    assert (status.state, status.slurm_job) == (state, JOB), status
    assert text in status.message, status.message
    assert standins.calls(slurm, "squeue")[0] == SQUEUE_ARGV
    assert standins.calls(slurm, "sacct") == ([] if squeue else [SACCT_ARGV])
    run_status(run)
    assert len(standins.calls(slurm, "squeue")) == 1  # asked once: answers are cached for a while


def test_a_preempted_run_is_queued_again_and_a_finished_one_asks_nobody(slurm):
    # Preemption: SLURM sent SIGTERM, the engine checkpointed and recorded "stopped"; the job is requeued.
    standins.set_job(slurm, JOB, "REQUEUED", None)
    run = slurm_run("stopped", remote=True, message="stop requested (SIGTERM)")
    status = run_status(run)
    assert status.state == "queued" and status.is_live
    assert f"SLURM job {JOB} requeued (REQUEUED)" in status.message and "last checkpoint" in status.message
    # Not requeued (a plain scancel): it stays stopped.
    slurm_status.clear_cache()
    standins.set_job(slurm, JOB, None, "PREEMPTED")
    assert run_status(run).state == "stopped"
    # A run that recorded its own end is what it says; squeue is not asked.
    before = len(standins.calls(slurm, "squeue"))
    done = slurm_run("finished", remote=True)
    assert run_status(done).state == "finished" and len(standins.calls(slurm, "squeue")) == before


def test_without_slurm_commands_the_heartbeat_decides(slurm, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert run_status(slurm_run("running", remote=True, beat_age=1.0)).state == "running"
    assert run_status(slurm_run("running", remote=True, beat_age=600.0)).state == "unresponsive"


def test_stop_cancels_a_queued_job_at_once(slurm):
    standins.set_job(slurm, JOB, "PENDING", None, reason="Resources")
    run = slurm_run("created")
    out = canvas("stop", run.id)
    assert out.returncode == 0, out.stderr
    assert standins.calls(slurm, "scancel") == [[JOB]]
    assert f"Run {run.id} stopped: SLURM job {JOB} was cancelled (CANCELLED by" in out.stdout


def test_stop_asks_the_engine_then_falls_back_to_scancel(slurm):
    standins.set_job(slurm, JOB, "RUNNING", None, nodes=OTHER)
    run = slurm_run("running", remote=True, beat_age=0.0)  # beating, but never reads its control file
    out = canvas("stop", run.id, "--timeout", "1")
    assert out.returncode == 0, out.stderr
    assert (run.control_dir / "stop").is_file()
    assert "waiting up to 1 s for its checkpoint before `scancel`" in out.stdout
    assert standins.calls(slurm, "scancel") == [[JOB]]
    assert f"Run {run.id} stopped: SLURM job {JOB} was cancelled" in out.stdout


def test_stop_force_cancels_at_once_and_records_it(slurm):
    standins.set_job(slurm, JOB, "RUNNING", None, nodes=OTHER)
    run = slurm_run("running", remote=True, beat_age=0.0)
    start = time.monotonic()
    out = canvas("stop", "--force", run.id, "--timeout", "60")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - start < 30  # no wait for a checkpoint
    assert standins.calls(slurm, "scancel") == [[JOB]] and not (run.control_dir / "stop").exists()
    meta = run.read_meta()
    assert meta.status == "stopped" and "cancelled by `canvas stop --force`" in meta.message


def test_an_engine_that_stops_in_time_is_not_cancelled(slurm):
    """The SLURM job runs on this host (a real engine): the control file and SIGTERM reach it, it
    checkpoints and records `stopped` before the deadline, and scancel is never called."""
    standins.set_job(slurm, JOB, "RUNNING", None, nodes="localhost")
    run = create_run("pretrain")
    control.launch_detached(run, engine_argv(run.path, 400, 0.05, "--checkpoint-every", "0"))
    wait_until(lambda: run_status(run).state == "running", what="running", timeout=60)
    run.update_meta(slurm_job_id=JOB)
    out = canvas("stop", run.id, "--timeout", "60")
    assert out.returncode == 0, out.stderr
    assert finish(run, 30).state == "stopped"
    assert standins.calls(slurm, "scancel") == []
    assert f"Run {run.id} stopped" in out.stdout
