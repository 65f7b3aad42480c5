"""The console side of controlling runs: launch, stop, checkpoint now, resume, delete. Torch-free.

Every action checks the *true* status first (:func:`engine.runs.status.run_status`) and refuses
with a :class:`RunStoreError` that says what to do instead, so the CLI and the console show the
same one-paragraph message.

Requests reach the engine two ways at once: a signal to its recorded process (only after the
process identity check, so a reused pid is never signalled) and a file in ``control/`` that the
engine polls (works when the console cannot signal: another host sharing the run store).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.runs.meta import RunMeta
from engine.runs.process import ProcessIdentity, identify, is_alive, send_signal, spawn_detached
from engine.runs.session import CONTROL_REQUESTS, RUN_DIR_ENV
from engine.runs.status import RunStatus, run_status
from engine.runs.store import RunDir, RunStoreError, now_iso, open_nofollow, require_real_dir


def launch_detached(
    run: RunDir,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
) -> int:
    """Start the engine command ``argv`` for ``run``, detached from this terminal; return its pid.

    See :func:`engine.runs.process.spawn_detached` for what "detached" means. The child gets
    ``CANVAS_RUN_DIR`` (and inherits ``CANVAS_HOME``), its output goes to ``engine.log`` after a
    header line, and run.json records the command, the attempt number and, unless the engine got
    there first, the child's identity, so ``canvas status`` is truthful from the first instant.
    """
    if not argv:
        raise RunStoreError("no engine command to launch")
    argv = [str(a) for a in argv]
    run.check_real()  # before anything changes: a linked part is refused, naming it
    attempt = run.read_meta().attempts + 1
    run.update_meta(
        status="starting",
        message="",
        argv=argv,
        attempts=attempt,
        pid=None,
        pid_start_time=None,
        pid_start_ticks=None,
        boot_id=None,
        launched=now_iso(),
        ended=None,
    )
    for stale in CONTROL_REQUESTS:  # requests meant for an earlier attempt
        with contextlib.suppress(FileNotFoundError):
            run.control_file(stale).unlink()
    header = f"=== canvas: attempt {attempt} at {now_iso()}: {' '.join(argv)}\n"
    log_fd = open_nofollow(run.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600, "engine log")
    try:
        os.write(log_fd, header.encode("utf-8"))
    finally:
        os.close(log_fd)
    try:
        proc = spawn_detached(argv, run.log_path, env={RUN_DIR_ENV: str(run.path), **(env or {})}, cwd=cwd)
    except OSError as exc:
        run.update_meta(status="failed", message=f"could not start {argv[0]}: {exc}", ended=now_iso())
        raise RunStoreError(f"could not start the engine for run {run.id}: {argv[0]}: {exc}") from exc
    identity = identify(proc.pid)
    with run.locked():
        meta = run.read_meta()
        if meta.pid is None and meta.status == "starting" and identity is not None:
            run.write_meta(meta.with_changes(**identity.as_meta()))
    return proc.pid


def _identity(run: RunDir) -> ProcessIdentity | None:
    return ProcessIdentity.from_meta(run.read_meta())


def _touch_control(run: RunDir, name: str) -> None:
    """Leave the request file ``control/<name>``: never through a symbolic link (RunStoreError
    naming it), owner-only."""
    path = run.control_file(name)
    fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT, 0o600, f"control request of run {run.id}")
    try:
        os.write(fd, now_iso().encode())
    finally:
        os.close(fd)


def _require_live(run: RunDir, action: str) -> RunStatus:
    run.check_real()  # a linked run directory, control/ or events.jsonl is refused before any request
    status = run_status(run, tail=0)
    if not status.is_live:
        raise RunStoreError(f"cannot {action} run {run.id}: it is not running (status: {status.state}).")
    return status


def stop_run(
    run: RunDir,
    *,
    wait: bool = False,
    timeout: float = 60.0,
    force: bool = False,
    cancel_after: float | None = None,
) -> RunStatus:
    """Ask a running engine to stop gracefully: it finishes its step, checkpoints and exits with
    status ``stopped``. With ``wait``, block until it has (or ``timeout`` passes).

    A run still ``starting`` (the engine has not entered :func:`run_context`, so has no handler
    yet) gets only the control file, which it reads at its first step: a SIGTERM then would kill
    it before it could checkpoint or record anything. A run on another host gets only the control
    file too (a pid means nothing here). An engine that is not responding (stopped with
    ``kill -STOP``) gets both, and acts on them once it runs again.

    ``force`` ends it now, without a checkpoint (:func:`force_stop`). A SLURM job still waiting
    in the queue is cancelled at once (there is no engine to ask); with ``cancel_after`` a running
    SLURM job that has not stopped by itself within that many seconds is cancelled (``scancel``).
    """
    status = _require_live(run, "stop")
    if force:
        return force_stop(run, status)
    if status.slurm_job and status.state == "queued":
        _scancel(run, status.slurm_job)
        return wait_for_end(run, 10.0) if wait else run_status(run, tail=0)
    _touch_control(run, "stop")
    if status.state == "running" and not status.remote:
        send_signal(_identity(run), signal.SIGTERM)
    if status.slurm_job and cancel_after is not None:
        ended = wait_for_end(run, cancel_after)
        if ended.is_live:
            _scancel(run, status.slurm_job)
            return wait_for_end(run, 10.0)
        return ended
    return wait_for_end(run, timeout) if wait else run_status(run, tail=0)


def force_stop(run: RunDir, status: RunStatus | None = None, *, timeout: float = 10.0) -> RunStatus:
    """End a live run now, without a checkpoint (``canvas stop --force``): ``scancel`` for a SLURM
    job, SIGKILL for an engine on this host (a stopped process included). Once the engine is gone,
    run.json says ``stopped`` with why; the next ``canvas resume`` continues from the last
    checkpoint. An ``unresponsive`` engine on another host (its heartbeat silent: the node is
    likely gone) is marked ``stopped`` and left a stop request. RunStoreError for a responsive
    engine on another host without SLURM: it reads its control file, and nothing here can end it.
    """
    status = status or _require_live(run, "stop")
    if status.slurm_job:
        _scancel(run, status.slurm_job)
        how = f"SLURM job {status.slurm_job} cancelled by `canvas stop --force` (no checkpoint)"
    elif status.remote and status.state == "unresponsive":
        # Nothing here can end it, and nothing says it still runs: record the stop, and leave the
        # control file, so that an engine that is alive after all stops at its next step.
        _touch_control(run, "stop")
        with run.locked():
            meta = run.read_meta()
            if meta.status in ("starting", "running"):
                how = (
                    f"marked stopped by `canvas stop --force`: its engine on host {status.host} was "
                    f"{status.message}"
                )
                run.write_meta(meta.with_changes(status="stopped", message=how, ended=now_iso()))
        return run_status(run, tail=0)
    elif status.remote:
        raise RunStoreError(
            f"run {run.id} runs on host {status.host}, where this console cannot end a process. "
            f"It was asked to stop through its control file; if it does not, log in to {status.host} "
            f"and end pid {status.pid} there (`kill -9 {status.pid}`)."
        )
    else:
        identity = _identity(run)
        send_signal(identity, signal.SIGKILL)
        how = "ended by `canvas stop --force` (killed, no checkpoint)"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = run.read_meta()
        if meta.status not in ("starting", "running"):
            break  # the engine (or SLURM's SIGTERM) recorded its own end
        if not status.slurm_job and not is_alive(ProcessIdentity.from_meta(meta)):
            break
        if status.slurm_job and not run_status(run, tail=0).is_live:
            break
        time.sleep(0.05)
    with run.locked():  # record the end the engine could not write (only if it wrote none)
        meta = run.read_meta()
        gone = status.slurm_job is not None or not is_alive(ProcessIdentity.from_meta(meta))
        if meta.status in ("starting", "running") and gone:
            run.write_meta(meta.with_changes(status="stopped", message=how, ended=now_iso()))
    return run_status(run, tail=0)


def _scancel(run: RunDir, job: str) -> None:
    from engine.cluster.slurm_status import cancel_job

    try:
        cancel_job(job)
    except OSError as exc:
        raise RunStoreError(f"could not cancel SLURM job {job} of run {run.id}: {exc}") from exc


def request_checkpoint(run: RunDir) -> None:
    """Ask a running engine to write a checkpoint at its next step boundary and continue."""
    status = _require_live(run, "checkpoint")
    _touch_control(run, "checkpoint")
    if (
        status.state == "running" and not status.remote
    ):  # before its handler exists SIGUSR1 would kill the engine
        send_signal(_identity(run), signal.SIGUSR1)


def kill_run(run: RunDir) -> bool:
    """SIGKILL the engine (no checkpoint, no final status: it will read as ``crashed``). Never
    for an engine recorded on another host: its pid names some process here."""
    if run_status(run, tail=0).remote:
        return False
    return send_signal(_identity(run), signal.SIGKILL)


def wait_for_end(run: RunDir, timeout: float | None = None, poll: float = 0.1) -> RunStatus:
    """Poll until the run is no longer live (or ``timeout`` seconds pass); return its status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = run_status(run)
        if not status.is_live or (deadline is not None and time.monotonic() >= deadline):
            return status
        time.sleep(poll)


def resume_argv(run: RunDir) -> list[str] | None:
    """The recorded resume command line with ``{run_dir}`` filled in, or None."""
    argv = run.read_meta().resume_argv
    if not argv:
        return None
    return [str(a).replace("{run_dir}", str(run.path)) for a in argv]


def resume_run(run: RunDir, env: Mapping[str, str] | None = None) -> int:
    """Continue a stopped, crashed or failed run from its last checkpoint; return the new pid.

    Runs the ``resume_argv`` the engine recorded in run.json, detached like the first launch.
    Refused for a run that is running or finished, has no checkpoint, or recorded no resume
    command.
    """
    with run.locked():  # claim the run, so two consoles resuming at once start one engine
        status = run_status(run, tail=0)
        _check_resumable(run, status)
        run.write_meta(restarting_meta(run, status))
    return launch_detached(run, resume_argv(run) or [], env)


def restarting_meta(run: RunDir, status: RunStatus, **fields: Any) -> RunMeta:
    """run.json for a run about to start again (resumed here, or resubmitted to SLURM): no process
    yet, when, and from which state; plus ``fields``. Call under :meth:`RunDir.locked`."""
    return run.read_meta().with_changes(
        status="starting",
        pid=None,
        pid_start_time=None,
        pid_start_ticks=None,
        boot_id=None,
        resumed=now_iso(),
        resumed_from=status.state,
        **fields,
    )


def check_restartable(run: RunDir, status: RunStatus) -> None:
    """RunStoreError unless the run is a real run directory that stopped, crashed or failed."""
    run.check_real()
    if status.is_live:
        raise RunStoreError(
            f"run {run.id} is {status.state} (pid {status.pid}); there is nothing to "
            f"resume. Follow it with `canvas logs {run.id} -f`."
        )
    if status.state == "finished":
        raise RunStoreError(
            f"run {run.id} finished; there is nothing to resume. Start a new run to train further."
        )
    if status.state not in ("stopped", "crashed", "failed"):
        raise RunStoreError(
            f"run {run.id} is {status.state}; only stopped, crashed or failed runs can be resumed."
        )


def _check_resumable(run: RunDir, status: RunStatus) -> None:
    check_restartable(run, status)
    argv = resume_argv(run)
    if not argv:
        raise RunStoreError(
            f"run {run.id} recorded no resume command (resume_argv in run.json); its "
            "engine does not support resuming."
        )
    if run.latest_checkpoint() is None:
        raise RunStoreError(
            f"run {run.id} has no checkpoint in {run.checkpoints_dir} to resume from "
            "(it ended before its first one); start a new run instead."
        )


def delete_run(run: RunDir, *, force: bool = False, timeout: float = 30.0) -> None:
    """Delete a run directory. A live run is refused unless ``force``: then it is stopped
    gracefully first (SIGTERM, up to ``timeout`` seconds) and killed if it does not exit."""
    # Only a real directory inside the store is deleted: never the target of a symbolic link
    # (resolving the path first would delete whatever the link points to).
    check_deletable(run)
    path = run.path
    if not run.exists():
        raise RunStoreError(f"{run.path} is not a run directory (no run.json); not deleting it.")
    status = run_status(run, tail=0)
    if status.is_live:
        if not force:
            raise RunStoreError(
                f"run {run.id} is {status.state} (pid {status.pid}). Stop it first with "
                f"`canvas stop {run.id}`, or use `canvas rm --force {run.id}` to stop "
                "and delete it."
            )
        if status.verified:
            stop_run(run)
            status = wait_for_end(run, timeout)
            if status.is_live:  # SIGKILL here, scancel for SLURM, a silent remote one marked stopped
                try:
                    force_stop(run, status)
                except RunStoreError:
                    pass  # a beating engine on another host: it reads its stop request, not us
                else:
                    status = wait_for_end(run, 10.0)
        if status.is_live:
            raise RunStoreError(
                f"run {run.id} is still {status.state} (pid {status.pid}"
                f"{f', on host {status.host}' if status.remote else ''}); not deleting it."
            )
    check_deletable(run)  # again: the stop above took time
    shutil.rmtree(path)  # removes links inside the run as links, never their targets


def check_deletable(run: RunDir) -> None:
    """RunStoreError unless ``run.path`` is a real directory (``lstat``, not a symbolic link)
    whose ``run.json`` is a real file: ``rm`` deletes only real run directories inside the store,
    and the links inside them as links (``shutil.rmtree`` never follows them)."""
    require_real_dir(run.path, f"run directory of {run.id}")
    if run.run_json.is_symlink():
        raise RunStoreError(
            f"{run.run_json} is a symbolic link; {run.path} is not a run the store created, so "
            "`canvas rm` does not delete it. Remove it by hand if it is yours."
        )
