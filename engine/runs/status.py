"""The true status of a run, derived from run.json *and* the process table or the heartbeat. Torch-free.

run.json says what the engine last wrote; that is only the truth for final states. A run whose
run.json says ``running`` is running only if its recorded process is alive with the recorded start
time (:func:`engine.runs.process.is_alive`); otherwise it died without writing a final status
(``kill -9``, out-of-memory killer, power loss) and is reported ``crashed``, with the last lines of
``engine.log``, which usually say why. ``crashed`` is never written to run.json: it is a
conclusion, and re-derived each time, so a run that is resumed simply becomes ``running`` again.

A live process is not necessarily a working one: when its heartbeat (:mod:`engine.runs.heartbeat`)
has gone silent, or the process is stopped (``kill -STOP``), or its loop made no progress for far
longer than its steps take, the state stays ``running`` but the message says "not progressing
since HH:MM:SS" and :attr:`RunStatus.responsive` is False (``canvas stop`` then says how to go on).

A run recorded on another host (a shared NFS home, a compute node) is never judged by a local pid
lookup: its heartbeat decides. Fresh: its recorded state. Silent for a few beats: ``unresponsive``
(a conclusion like ``crashed``, never written), because from here a dead host and a slow file
system look the same. No heartbeat at all (an engine older than heartbeats): the recorded state
with ``verified=False``. A SLURM run (``slurm_job_id`` in run.json) also follows its job through
``squeue``/``sacct`` (:mod:`engine.cluster.slurm_status`): ``queued`` while the job waits for
nodes, and the job's end when the engine could not record its own.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from engine.runs.events import FINAL_STATES, Metric, RunInfo
from engine.runs.heartbeat import Heartbeat, fmt_clock, read_heartbeat
from engine.runs.meta import RunMeta
from engine.runs.process import ProcessIdentity, boot_id, is_alive, is_stopped
from engine.runs.reader import last_events, tail_text
from engine.runs.store import RunDir, RunStoreError

#: States in which the engine process should exist (or, ``queued``, is about to: a SLURM job
#: waiting for nodes). ``unresponsive``: a run on another host whose heartbeat went silent.
LIVE_STATES = ("starting", "queued", "running", "unresponsive")
#: Every state a reader can report. ``crashed``, ``queued`` and ``unresponsive`` are concluded by
#: readers, never written to run.json.
ALL_STATES = (
    "created",
    "queued",
    "starting",
    "running",
    "unresponsive",
    "finished",
    "stopped",
    "failed",
    "crashed",
    "unknown",
)


@dataclass(frozen=True)
class RunStatus:
    """What a run is doing now, and the evidence: ``alive`` is the process check's (or, on another
    host, the heartbeat's) answer, ``verified`` False when nothing could be checked (another host
    and no heartbeat), ``log_tail`` the end of engine.log for crashed and failed runs.

    ``host`` is where the engine runs (or ran), ``remote`` True when that is not this host;
    ``responsive`` False when a live engine does not make progress (silent heartbeat, stopped
    process, stuck loop): a stop request then waits until it runs again. ``slurm_job`` and
    ``slurm_state`` are the SLURM job and its state when the run is a SLURM job."""

    state: str
    message: str = ""
    pid: int | None = None
    alive: bool = False
    verified: bool = True
    log_tail: list[str] = field(default_factory=list)
    host: str | None = None
    remote: bool = False
    responsive: bool = True
    heartbeat_age_s: float | None = None
    slurm_job: str | None = None
    slurm_state: str | None = None

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def is_final(self) -> bool:
        return self.state in (*FINAL_STATES, "crashed")


def _other_host(meta: RunMeta) -> bool:
    host = meta.host
    if not host or host == socket.gethostname():
        return False
    # The same machine under another name still has the same boot id.
    return not (meta.boot_id and meta.boot_id == boot_id())


def _iso_ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def current_heartbeat(run: RunDir, meta: RunMeta) -> Heartbeat | None:
    """The heartbeat of the engine run.json names (same host and pid, beating since it took the
    run over), or None: a beat left by an earlier attempt says nothing about this one."""
    beat = read_heartbeat(run.path)
    if beat is None or meta.pid is None or beat.pid != meta.pid:
        return None
    if meta.host and beat.host != meta.host:
        return None
    started = _iso_ts(meta.started)
    if started is not None and beat.t < started - beat.stale_after(remote=True):
        return None
    return beat


def _not_progressing(beat: Heartbeat | None, stopped: bool, pid: int | None, now: float) -> str:
    """The "not progressing since …" message for a live local engine, or "" when it progresses."""
    cont = f"; the process is stopped (kill -STOP or Ctrl-Z): `kill -CONT {pid}` lets it go on"
    if beat is not None and (stopped or beat.is_stale(now)):
        age = beat.age(now)
        return f"not progressing since {fmt_clock(beat.t, now)} (no heartbeat for {age:.0f} s)" + (
            cont if stopped else ""
        )
    if stopped:
        return "not progressing" + cont
    since = beat.stalled_since(now) if beat is not None else None
    if beat is not None and since is not None:
        return (
            f"not progressing since {fmt_clock(since, now)} (no step for {now - since:.0f} s, "
            f"steps took ~{beat.gap_s:.1f} s; last step {beat.step})"
        )
    return ""


def _remote_status(
    run: RunDir, meta: RunMeta, state: str, message: str, pid: int | None, now: float
) -> RunStatus:
    """A live state recorded on another host, judged by the heartbeat only (never a local pid)."""
    host = meta.host
    where = f"on host {host}"
    beat = current_heartbeat(run, meta)
    if beat is None:
        if state == "starting":
            return RunStatus(state, message or where, pid, False, False, host=host, remote=True)
        return RunStatus(
            state,
            message or f"{where} (no heartbeat: its engine cannot be checked from here)",
            pid,
            False,
            False,
            host=host,
            remote=True,
        )
    age = beat.age(now)
    if beat.is_stale(now, remote=True):
        return RunStatus(
            "unresponsive",
            f"unresponsive since {fmt_clock(beat.t, now)} (no heartbeat for {age:.0f} s)",
            pid,
            False,
            True,
            host=host,
            remote=True,
            responsive=False,
            heartbeat_age_s=age,
        )
    since = beat.stalled_since(now)
    if since is not None:
        note = (
            f"not progressing since {fmt_clock(since, now)} (no step for {now - since:.0f} s; "
            f"last step {beat.step})"
        )
        return RunStatus(
            state, note, pid, True, True, host=host, remote=True, responsive=False, heartbeat_age_s=age
        )
    return RunStatus(
        state,
        message or f"{where}, heartbeat {age:.0f} s ago",
        pid,
        True,
        True,
        host=host,
        remote=True,
        heartbeat_age_s=age,
    )


def run_status(
    run: RunDir, meta: RunMeta | None = None, *, tail: int = 20, now: float | None = None
) -> RunStatus:
    """Derive the run's status; see the module docstring. ``tail`` lines of engine.log are
    attached to crashed and failed runs; ``now`` (unix seconds) is for tests."""
    meta = meta if meta is not None else run.read_meta()
    now = time.time() if now is None else now
    if _follows_slurm(meta):
        return _slurm_status(run, meta, tail, now)
    return _status(run, meta, tail, now)


def _follows_slurm(meta: RunMeta) -> bool:
    """Whether the SLURM job has a say: while run.json says the run is not over (submitted,
    starting, running), and after a stop by SIGTERM, which is what a preemption sends before the
    job is requeued. A run that recorded its own end otherwise is what it says."""
    if not meta.slurm_job_id:
        return False
    state = meta.status or "unknown"
    if state in ("created", *LIVE_STATES):
        return True
    return state == "stopped" and "SIGTERM" in (meta.message or "")


def _slurm_status(run: RunDir, meta: RunMeta, tail: int, now: float) -> RunStatus:
    """The status of a SLURM run: the job's state (engine.cluster.slurm_status) combined with the
    engine's own evidence (its pid on this host, its heartbeat elsewhere)."""
    from engine.cluster.slurm_status import job_state

    job = str(meta.slurm_job_id)
    state = meta.status or "unknown"
    base = _status(run, meta, tail, now)
    answer = job_state(job)
    if answer is None:  # no squeue/sacct here, or no answer: the heartbeat alone
        note = base.message or f"SLURM job {job} (squeue and sacct gave no answer here)"
        return dataclasses.replace(base, slurm_job=job, message=note)
    tag: dict[str, Any] = {
        "slurm_job": job,
        "slurm_state": answer.state,
        "host": meta.host,
        "remote": base.remote,
    }
    again = "it continues from its last checkpoint when the job starts again"
    if state == "stopped":  # stopped by SIGTERM: a preemption, if the job is back in the queue
        if answer.queued:
            return RunStatus("queued", f"SLURM job {job} requeued ({answer.describe()}): {again}", **tag)
        return dataclasses.replace(base, slurm_job=job, slurm_state=answer.state)
    if answer.queued:
        message = f"SLURM job {job} {answer.describe()}"
        if state in ("running", "unresponsive"):  # the engine ran and was put back in the queue
            message += f": requeued; {again}"
        return RunStatus("queued", message, **tag)
    if answer.active:
        if state == "created" or (state == "starting" and base.pid is None):
            return RunStatus(
                "starting", f"SLURM job {job} {answer.describe()}: the engine is starting", **tag
            )
        if not base.verified:  # an engine without heartbeats: SLURM vouches for it
            message = f"SLURM job {job} {answer.describe()}"
            return dataclasses.replace(
                base, verified=True, message=message, slurm_job=job, slurm_state=answer.state
            )
        return dataclasses.replace(base, slurm_job=job, slurm_state=answer.state)
    # The job is over but run.json says it is not: the engine could not record its end. It may
    # have done so between our reads: look once more.
    try:
        fresh = run.read_meta()
    except RunStoreError:
        fresh = meta
    if fresh.status != meta.status:
        return run_status(run, fresh, tail=tail, now=now)
    pid = base.pid
    if answer.state == "CANCELLED":
        message = f"SLURM job {job} was cancelled ({answer.describe()}) before the engine recorded an end"
        return RunStatus("stopped", message, pid, **tag)
    if answer.state == "COMPLETED":
        message = f"SLURM job {job} completed, but the engine recorded no end (see engine.log)"
    else:
        message = f"SLURM job {job} ended {answer.describe()} before the engine recorded an end"
    return RunStatus("crashed", message, pid, log_tail=tail_text(run.log_path, tail), **tag)


def _status(run: RunDir, meta: RunMeta, tail: int, now: float) -> RunStatus:
    """The status from run.json, the process table (this host) and the heartbeat (any host)."""
    state = meta.status or "unknown"
    message = meta.message
    identity = ProcessIdentity.from_meta(meta)
    pid = identity.pid if identity else None
    remote = _other_host(meta)
    if state in FINAL_STATES:
        log = tail_text(run.log_path, tail) if state == "failed" else []
        alive = False if remote else is_alive(identity)
        return RunStatus(state, message, pid, alive, True, log, host=meta.host, remote=remote)
    if state not in LIVE_STATES:
        return RunStatus(state, message, pid, False, True, host=meta.host, remote=remote)
    if remote:
        return _remote_status(run, meta, state, message, pid, now)
    if is_alive(identity):
        beat = current_heartbeat(run, meta)
        note = _not_progressing(beat, is_stopped(identity), pid, now)
        age = beat.age(now) if beat is not None else None
        return RunStatus(
            state, note or message, pid, True, True, host=meta.host, responsive=not note, heartbeat_age_s=age
        )
    # Dead. It may have written its final status between our two reads: look once more.
    try:
        fresh = run.read_meta()
    except RunStoreError:
        fresh = meta
    if fresh.status != state or ProcessIdentity.from_meta(fresh) != identity:
        return run_status(run, fresh, tail=tail, now=now)
    if state == "starting" and identity is None:
        return RunStatus("starting", message, None, False, True, host=meta.host)
    why = (
        f"the engine process (pid {pid}) is gone without a final status"
        if pid
        else "the engine never recorded a process"
    )
    return RunStatus("crashed", why, pid, False, True, tail_text(run.log_path, tail), host=meta.host)


@dataclass(frozen=True)
class RunSummary:
    """One row of ``canvas runs``: identity, true status and the latest numbers."""

    id: str
    name: str
    kind: str
    status: str
    message: str
    step: int | None
    total_steps: int | None
    loss: float | None
    tokens_per_s: float | None
    created: str | None
    age_s: float | None
    host: str | None
    pid: int | None
    verified: bool
    path: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _age(created: str | None) -> float | None:
    if not created:
        return None
    try:
        return max(0.0, time.time() - datetime.fromisoformat(created).timestamp())
    except ValueError:
        return None


def summarize(run: RunDir) -> RunSummary:
    """The summary of one run, reading only run.json and the end of events.jsonl."""
    try:
        meta = run.read_meta()
    except RunStoreError as exc:
        return RunSummary(
            run.id,
            "?",
            "?",
            "unknown",
            str(exc),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            True,
            str(run.path),
        )
    status = run_status(run, meta, tail=0)
    last = last_events(run.events_path, (Metric, RunInfo))
    metric, info = last.get(Metric), last.get(RunInfo)
    metric = metric if isinstance(metric, Metric) else Metric(step=None)  # type: ignore[arg-type]
    total = meta.total_steps or (info.total_steps if isinstance(info, RunInfo) else None)
    loss = metric.loss
    if loss is not None and not math.isfinite(loss):  # kept as the writer spells it: JSON has no NaN
        loss = str(loss)  # type: ignore[assignment]
    return RunSummary(
        id=run.id,
        name=meta.name,
        kind=str(meta.kind),
        status=status.state,
        message=status.message,
        step=metric.step,
        total_steps=total,
        loss=loss,
        tokens_per_s=metric.tokens_per_s,
        created=meta.created,
        age_s=_age(meta.created),
        host=meta.host,
        pid=status.pid,
        verified=status.verified,
        path=str(run.path),
    )
