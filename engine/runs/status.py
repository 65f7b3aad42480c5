"""The true status of a run, derived from run.json *and* the process table. Torch-free.

run.json says what the engine last wrote; that is only the truth for final states. A run whose
run.json says ``running`` is running only if its recorded process is alive with the recorded start
time (:func:`engine.runs.process.is_alive`); otherwise it died without writing a final status
(``kill -9``, out-of-memory killer, power loss) and is reported ``crashed``, with the last lines of
``engine.log``, which usually say why. ``crashed`` is never written to run.json: it is a
conclusion, and re-derived each time, so a run that is resumed simply becomes ``running`` again.

A run recorded on another host (a shared NFS home) cannot be checked from here; its recorded
status is reported with ``verified=False``.
"""

from __future__ import annotations

import math
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from engine.runs.events import FINAL_STATES, Metric, RunInfo
from engine.runs.meta import RunMeta
from engine.runs.process import ProcessIdentity, boot_id, is_alive
from engine.runs.reader import last_events, tail_text
from engine.runs.store import RunDir, RunStoreError

#: States in which the engine process should exist.
LIVE_STATES = ("starting", "running")
#: Every state a reader can report.
ALL_STATES = ("created", "starting", "running", "finished", "stopped", "failed", "crashed", "unknown")


@dataclass(frozen=True)
class RunStatus:
    """What a run is doing now, and the evidence: ``alive`` is the process check's answer,
    ``verified`` False when the process could not be checked (another host), ``log_tail`` the end
    of engine.log for crashed and failed runs."""

    state: str
    message: str = ""
    pid: int | None = None
    alive: bool = False
    verified: bool = True
    log_tail: list[str] = field(default_factory=list)

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


def run_status(run: RunDir, meta: RunMeta | None = None, *, tail: int = 20) -> RunStatus:
    """Derive the run's status; see the module docstring. ``tail`` lines of engine.log are
    attached to crashed and failed runs."""
    meta = meta if meta is not None else run.read_meta()
    state = meta.status or "unknown"
    message = meta.message
    identity = ProcessIdentity.from_meta(meta)
    pid = identity.pid if identity else None
    if state in FINAL_STATES:
        log = tail_text(run.log_path, tail) if state == "failed" else []
        return RunStatus(state, message, pid, is_alive(identity), True, log)
    if state not in LIVE_STATES:
        return RunStatus(state, message, pid, False, True)
    if _other_host(meta):
        return RunStatus(state, message or f"on host {meta.host}", pid, False, False)
    if is_alive(identity):
        return RunStatus(state, message, pid, True, True)
    # Dead. It may have written its final status between our two reads: look once more.
    try:
        fresh = run.read_meta()
    except RunStoreError:
        fresh = meta
    if fresh.status != state or ProcessIdentity.from_meta(fresh) != identity:
        return run_status(run, fresh, tail=tail)
    if state == "starting" and identity is None:
        return RunStatus("starting", message, None, False, True)
    why = (
        f"the engine process (pid {pid}) is gone without a final status"
        if pid
        else "the engine never recorded a process"
    )
    return RunStatus("crashed", why, pid, False, True, tail_text(run.log_path, tail))


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
