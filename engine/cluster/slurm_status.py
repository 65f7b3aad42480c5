"""A SLURM job's state, from ``squeue`` and ``sacct``, and ``scancel``. Torch-free.

:func:`job_state` asks ``squeue`` first (the controller's live view: pending, running, and jobs
that ended within its ``MinJobAge``), then ``sacct`` (the accounting record of jobs that left the
queue). Answers are cached for :data:`POLL_TTL_S` seconds per job, so a console redrawing its runs
list every second asks the controller at most once in that time (clusters discourage tight
``squeue`` loops). When neither command exists or answers, :func:`job_state` returns None and the
caller falls back to the heartbeat.

Formats (SLURM's documentation): ``squeue --noheader --jobs=ID --format=%i|%T|%r|%N`` prints
``4242|RUNNING|None|node-[1-2]`` (``%T`` the state in its long form, ``%r`` the reason, ``%N`` the
nodes), and fails with ``slurm_load_jobs error: Invalid job id specified`` for a job it no longer
knows; ``sacct --jobs=ID --allocations --noheader --parsable2 --format=JobID,State,ExitCode`` prints
``4242|CANCELLED by 1000|0:15`` (``--allocations``: the job itself, not its steps; the exit code is
``status:signal``).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

#: Seconds a job's answer is reused before SLURM is asked again.
POLL_TTL_S = 10.0
#: Seconds a SLURM command may take before it counts as no answer (a busy controller).
COMMAND_TIMEOUT_S = 15.0

SQUEUE_FORMAT = "%i|%T|%r|%N"
SACCT_FORMAT = "JobID,State,ExitCode"

#: Waiting for nodes (or to be started again after a requeue).
QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
#: Holding an allocation: the engine runs, starts, or is being wound down.
ACTIVE = frozenset(
    {"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED", "STOPPED"}
)
#: Over: the job will not run again.
ENDED = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)


@dataclass(frozen=True)
class JobState:
    """What SLURM says of one job: ``state`` its state word (``PENDING``, ``CANCELLED``…),
    ``detail`` the state as printed (``CANCELLED by 1000``), ``reason`` why it waits (squeue),
    ``nodes`` where it runs, ``exit_code`` ``status:signal`` (sacct), ``source`` which command said
    it."""

    job: str
    state: str
    detail: str = ""
    reason: str = ""
    nodes: str = ""
    exit_code: str = ""
    source: str = ""

    @property
    def queued(self) -> bool:
        return self.state in QUEUED

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def ended(self) -> bool:
        return self.state in ENDED or not (self.queued or self.active)

    def describe(self) -> str:
        """``PENDING (Priority)``, ``RUNNING on node-7``, ``CANCELLED by 1000, exit 0:15``."""
        text = self.detail or self.state
        if self.reason and self.reason not in ("None", "(null)") and not self.ended:
            text += f" ({self.reason})"
        if self.nodes and self.active:
            text += f" on {self.nodes}"
        if self.exit_code and self.ended and self.exit_code != "0:0":
            text += f", exit {self.exit_code}"
        return text


_cache: dict[str, tuple[float, JobState | None]] = {}
_lock = threading.Lock()


def clear_cache(job: str | None = None) -> None:
    """Forget cached answers (of one job, or all): the next :func:`job_state` asks SLURM."""
    with _lock:
        if job is None:
            _cache.clear()
        else:
            _cache.pop(str(job), None)


def _run(argv: list[str]) -> subprocess.CompletedProcess | None:
    """The command's result, or None when it does not exist or does not answer in time."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def parse_squeue(job: str, text: str) -> JobState | None:
    """The job's line of ``squeue --format=%i|%T|%r|%N`` output, or None."""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] == job:
            state = parts[1].strip().upper()
            reason = parts[2].strip() if len(parts) > 2 else ""
            nodes = parts[3].strip() if len(parts) > 3 else ""
            return JobState(job, state, state, reason, nodes, source="squeue")
    return None


def parse_sacct(job: str, text: str) -> JobState | None:
    """The job's allocation line of ``sacct --parsable2 --format=JobID,State,ExitCode``, or None.
    Steps (``4242.batch``, ``4242.0``) are skipped should ``--allocations`` be ignored."""
    found = None
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] == job:
            detail = parts[1].strip()
            state = detail.split(" ")[0].upper() if detail else ""
            exit_code = parts[2].strip() if len(parts) > 2 else ""
            found = JobState(job, state, detail, exit_code=exit_code, source="sacct")
    return found


def _ask(job: str) -> JobState | None:
    out = _run(["squeue", "--noheader", f"--jobs={job}", f"--format={SQUEUE_FORMAT}"])
    if out is not None and out.returncode == 0:
        state = parse_squeue(job, out.stdout)
        if state is not None:
            return state
    out = _run(
        ["sacct", f"--jobs={job}", "--allocations", "--noheader", "--parsable2", f"--format={SACCT_FORMAT}"]
    )
    if out is not None and out.returncode == 0:
        return parse_sacct(job, out.stdout)
    return None


def job_state(job: str, *, now: float | None = None) -> JobState | None:
    """What SLURM says of ``job`` (cached :data:`POLL_TTL_S` s), or None when it cannot be asked."""
    job = str(job)
    now = time.monotonic() if now is None else now
    with _lock:
        hit = _cache.get(job)
        if hit is not None and now - hit[0] < POLL_TTL_S:
            return hit[1]
    state = _ask(job)
    with _lock:
        _cache[job] = (now, state)
    return state


def cancel_job(job: str) -> None:
    """``scancel JOB``: SLURM sends the job SIGTERM, then SIGKILL after its ``KillWait``. OSError
    when ``scancel`` is missing or refuses (its own message)."""
    job = str(job)
    out = _run(["scancel", job])
    clear_cache(job)
    if out is None:
        raise OSError("`scancel` is not on PATH (is this a SLURM login node?)")
    if out.returncode != 0:
        said = (out.stderr.strip() or out.stdout.strip() or f"exit status {out.returncode}")[-400:]
        raise OSError(f"scancel {job}: {said}")
