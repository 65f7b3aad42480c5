"""The engine side of a run: the one writer of its events and of its final status. Torch-free.

An engine process (pre-training, fine-tuning, evaluation, data preparation) wraps its work in
:func:`run_context`::

    with run_context(run_dir, resume_argv=python_argv("engine.train", "--resume", "{run_dir}")) as s:
        s.emit("run_info", total_steps=1000, params=n, precision="bf16", device="cuda:0")
        for step in range(start, 1000):
            ...
            s.emit("metric", step=step, loss=loss, tokens_per_s=tps)
            if s.checkpoint_requested() or step % 500 == 0:
                with atomic_path(s.run.checkpoints_dir / "last.pt") as tmp:
                    torch.save(state, tmp)
                s.emit("checkpoint", step=step, path="checkpoints/last.pt", kind="last")
            if s.stop_requested:
                break        # after checkpointing: the context then records "stopped"

What it does for the engine:

- records this process's identity (pid, start time, boot id) and ``running`` in run.json, so the
  console can tell a live run from a dead one even after pid reuse;
- turns signals into flags the loop polls at step boundaries (a signal handler must never
  interrupt a half-written checkpoint): ``SIGTERM`` (``canvas stop``) and ``SIGINT`` set
  :attr:`EngineSession.stop_requested` (a second ``SIGINT`` interrupts at once, for a foreground
  engine that hangs); ``SIGUSR1`` requests a checkpoint now; ``SIGHUP`` is ignored, belt and braces
  on top of the detached launch;
- the same two requests also arrive as files ``control/stop`` and ``control/checkpoint``, for a
  console that cannot signal the engine (another host sharing the run store over NFS); they are
  checked at most every :data:`CONTROL_POLL_S` seconds, so polling every step stays cheap;
- writes ``heartbeat.json`` every few seconds from a daemon thread (:mod:`engine.runs.heartbeat`),
  with the last step and when the loop last reached a step boundary (each poll of
  :attr:`EngineSession.stop_requested`), so a reader on any host can tell a live engine from a
  silent one (``kill -STOP``, a lost node) and a beating but stuck one;
- on leaving the block it writes the final status atomically: ``stopped`` if a stop was
  requested, ``finished`` otherwise, ``failed`` with the exception message (and the traceback in
  ``engine.log``) if the block raised. The status event is appended *before* run.json changes, so
  once run.json says the run ended, ``events.jsonl`` is complete.

Only one process may write a run's events: under ``torchrun`` only rank 0 enters ``run_context``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from engine.runs import events as ev
from engine.runs.heartbeat import HeartbeatWriter
from engine.runs.process import identify
from engine.runs.store import RunDir, RunStoreError, now_iso, open_nofollow

#: Seconds between checks of the control files (signals are noticed at once).
CONTROL_POLL_S = 0.5

#: Request files the console may leave in ``control/``.
CONTROL_REQUESTS = ("stop", "checkpoint")

#: Environment variable set for engine processes: the run directory they own.
RUN_DIR_ENV = "CANVAS_RUN_DIR"

#: Exit status of an engine whose run directory was deleted under it (it writes nothing more).
RUN_DELETED_EXIT = 3

#: Run-directory temporaries older than this are leftovers of a killed process (a live writer
#: renames its temporary within milliseconds); ``checkpoints/`` is the engine's alone, so every
#: temporary there is a leftover once the engine owns the run.
STALE_TMP_S = 60.0


def _json_default(value: Any) -> Any:
    """Make numpy and torch scalars (and anything with ``item``/``tolist``) serialisable."""
    for attr in ("item", "tolist"):
        method = getattr(value, attr, None)
        if callable(method):
            with contextlib.suppress(Exception):
                return method()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _clean(value: Any) -> Any:
    """Non-finite floats as the strings "nan", "inf", "-inf".

    ``NaN`` and ``Infinity`` are not JSON: Python would write and read them, but jq, browsers and
    pandas' strict readers choke on the whole line. A diverged loss is exactly the event a user
    needs to see, so it is written in a form every reader accepts.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return value


class EventWriter:
    """Appends events to ``events.jsonl``, one JSON object a line, each with a single ``write``.

    The file is opened ``O_APPEND`` and each line goes out in one ``os.write`` call, unbuffered:
    a reader sees whole lines or nothing of a line (the torn tail after ``kill -9`` is handled by
    the reader), and a crash loses no event that ``emit`` returned from. Thread-safe, so telemetry
    samplers can emit from their own threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # O_NOFOLLOW: a symbolic link at events.jsonl is refused (RunStoreError naming it), so the
        # engine never appends to a file outside the run store.
        self._fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600, "event log")
        self._heal_torn_tail()

    def _heal_torn_tail(self) -> None:
        """After a crash mid-line, start on a fresh line so the next event is not glued to the
        fragment (the fragment alone then counts as one garbage line)."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                os.write(self._fd, b"\n")

    def emit(self, event: str | ev.Event, **fields: Any) -> dict[str, Any]:
        """Append one event: ``emit("metric", step=10, loss=2.3)`` or ``emit(Metric(step=10))``.

        Known types are checked against :mod:`engine.runs.events` (ValueError on an unknown or
        missing field); unknown types are written as given. Returns the record written.
        """
        if isinstance(event, ev.Event):
            payload = ev.to_record(event)
            kind = payload.pop("type")
            payload.update(fields)
        else:
            kind, payload = event, fields
        ev.validate(kind, payload)
        record = {"v": ev.SCHEMA_VERSION, "t": payload.pop("t", None) or time.time(), "type": kind}
        record.update(ev.defaults(kind))
        record.update({k: _clean(v) for k, v in payload.items()})
        line = (json.dumps(record, default=_json_default, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"event writer for {self.path} is closed")
            view = memoryview(line)
            while view:  # a regular file takes it all at once; loop only for exotic file systems
                written = os.write(self._fd, view)
                view = view[written:]
        return record

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EngineSession:
    """What an engine process holds while it owns a run: the writer, the flags, run.json access.

    Created by :func:`run_context`; the loop polls :attr:`stop_requested` and
    :meth:`checkpoint_requested` at step boundaries.
    """

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.events = EventWriter(run.events_path)
        self._stop = threading.Event()
        self._checkpoint = threading.Event()
        self._stop_reason = ""
        self._next_control_check = 0.0
        self._outcome: tuple[str, str] | None = None
        #: Proof of life for readers on any host (engine.runs.heartbeat), started by run_context.
        self.heartbeat = HeartbeatWriter(run.path)
        st = os.stat(run.path)
        self._identity = (st.st_dev, st.st_ino)

    # -- events -------------------------------------------------------------------------------
    def emit(self, event: str | ev.Event, **fields: Any) -> dict[str, Any]:
        """Append an event (see :meth:`EventWriter.emit`). A ``run_info`` with ``total_steps``
        also stores it in run.json, so ``canvas runs`` shows step/total without reading the
        whole history."""
        record = self.events.emit(event, **fields)
        if record["type"] == "metric" and isinstance(record.get("step"), int):
            self.heartbeat.step = record["step"]  # the heartbeat says how far the run got
        if record["type"] == "run_info" and record.get("total_steps") is not None:
            self.run.update_meta(total_steps=record["total_steps"])
        return record

    def log(self, message: str, level: str = "info") -> None:
        """A ``log`` event and the same line in ``engine.log`` (stderr)."""
        self.emit("log", message=message, level=level)
        print(f"[{level}] {message}", file=sys.stderr, flush=True)

    # -- requests from the console ------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to finish its step, checkpoint and leave (what SIGTERM does)."""
        if not self._stop.is_set():
            self._stop_reason = reason
        self._stop.set()

    def request_checkpoint(self) -> None:
        """Ask the loop to checkpoint at its next step boundary and go on (what SIGUSR1 does)."""
        self._checkpoint.set()

    def _poll_control(self) -> None:
        now = time.monotonic()
        if now < self._next_control_check:
            return
        self._next_control_check = now + CONTROL_POLL_S
        control = self.run.control_dir
        if not control.is_dir() or control.is_symlink():
            return  # a control/ replaced by a link is never followed (nor deleted in)
        if (control / "stop").exists():
            self.request_stop("stop requested (control file)")
        checkpoint = control / "checkpoint"
        if checkpoint.exists():
            with contextlib.suppress(FileNotFoundError):
                checkpoint.unlink()
            self.request_checkpoint()

    def _check_run_dir(self) -> None:
        """Exit at once, writing nothing, if the run directory was deleted (or replaced) under us:
        anything written now would recreate part of a folder the user removed."""
        try:
            st = os.stat(self.run.path)
            present = (st.st_dev, st.st_ino) == self._identity and os.path.lexists(self.run.run_json)
        except OSError:
            present = False
        if not present:
            with contextlib.suppress(Exception):
                print(
                    f"[error] the run directory {self.run.path} was deleted: stopping without writing",
                    file=sys.stderr,
                    flush=True,
                )
            os._exit(RUN_DELETED_EXIT)

    @property
    def stop_requested(self) -> bool:
        """True once a stop was asked for (SIGTERM, SIGINT, control file or :meth:`request_stop`).

        Polled at every step boundary, so it also checks the run directory still exists: an engine
        whose directory was deleted exits there and then (status :data:`RUN_DELETED_EXIT`)."""
        self._check_run_dir()
        self.heartbeat.progress()  # a step boundary: the main loop is progressing
        self._poll_control()
        return self._stop.is_set()

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    def checkpoint_requested(self) -> bool:
        """True once per checkpoint-now request (SIGUSR1 or control file); the call consumes it."""
        self._poll_control()
        if self._checkpoint.is_set():
            self._checkpoint.clear()
            return True
        return False

    # -- run.json -----------------------------------------------------------------------------
    def set_resume_argv(self, argv: Sequence[str]) -> None:
        """The command line ``canvas resume`` runs to continue this run from its last checkpoint;
        ``{run_dir}`` in it is replaced by the run directory at resume time."""
        self.run.update_meta(resume_argv=list(argv))

    def set_outcome(self, status: str, message: str = "") -> None:
        """Override the final status the context writes (``finished``/``stopped``/``failed``),
        e.g. ``failed`` with a message for a run that ended by diverging rather than raising."""
        if status not in ev.FINAL_STATES:
            raise ValueError(f"final status must be one of {', '.join(ev.FINAL_STATES)}, not {status!r}")
        self._outcome = (status, message)

    def _finish(self, status: str, message: str, **extra: Any) -> None:
        self._check_run_dir()  # deleted under us (perhaps mid-checkpoint): leave, writing nothing
        with contextlib.suppress(OSError, ValueError):
            self.events.emit("status", state=status, message=message)
        self.run.update_meta(status=status, message=message, ended=now_iso(), **extra)
        self.events.close()


def _install_signals(session: EngineSession) -> dict[int, Any]:
    """Route signals to the session's flags; returns the previous handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # signal handlers can only be installed from the main thread
    interrupts = 0

    def on_term(signum: int, frame: FrameType | None) -> None:
        session.request_stop(f"stop requested ({signal.Signals(signum).name})")

    def on_int(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        session.request_stop("stop requested (SIGINT)")

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        session.request_checkpoint()

    previous: dict[int, Any] = {}
    for sig, handler in (
        (signal.SIGTERM, on_term),
        (signal.SIGINT, on_int),
        (signal.SIGUSR1, on_usr1),
        (signal.SIGHUP, signal.SIG_IGN),
    ):
        previous[sig] = signal.signal(sig, handler)
    return previous


@contextlib.contextmanager
def run_context(
    run_dir: str | Path | RunDir | None = None,
    *,
    resume_argv: Sequence[str] | None = None,
    install_signals: bool = True,
    exit_on_error: bool = True,
) -> Iterator[EngineSession]:
    """Own a run for the duration of the block; see the module docstring.

    ``run_dir`` defaults to ``$CANVAS_RUN_DIR``. ``resume_argv`` is recorded in run.json for
    ``canvas resume``. With ``exit_on_error`` (the default, for engine entry points) an exception
    is recorded as ``failed``, its traceback printed to stderr (``engine.log``) and the process
    exits with status 1 instead of printing the traceback a second time; without it the exception
    propagates after being recorded.
    """
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_ENV) or ""
        if not run_dir:
            raise ValueError(f"no run directory given and {RUN_DIR_ENV} is not set")
    # abspath, not resolve: a run directory that is a symbolic link must be seen (and refused) as one
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(os.path.abspath(run_dir)))
    if not run.exists():
        raise FileNotFoundError(f"{run.path} is not a run directory (no run.json)")
    try:  # a linked run directory, control/ or events.jsonl: refused before anything is written
        run.check_real()
        run.control_file(CONTROL_REQUESTS[0])
    except RunStoreError as exc:
        if not run.path.is_symlink() and not run.run_json.is_symlink():
            with contextlib.suppress(RunStoreError, OSError, ValueError):
                run.update_meta(status="failed", message=str(exc), ended=now_iso())
        raise
    me = identify(os.getpid())
    born = me.start_time if me and me.start_time else time.time()
    for name in CONTROL_REQUESTS:
        # A request older than this process was meant for an earlier attempt; one made while this
        # process was starting up (``canvas stop`` during a slow torch import) is honoured.
        with contextlib.suppress(FileNotFoundError):
            request = run.control_dir / name
            if request.stat().st_mtime < born - 1.0:
                request.unlink()
    remove_stale_temporaries(run)
    session = EngineSession(run)
    # Handlers first: once run.json says "running", `canvas stop` sends SIGTERM, which must set
    # the flag rather than kill the process with the default action.
    previous = _install_signals(session) if install_signals else {}
    # Owner-only files for an engine inside another process too (`canvas demo`, the console):
    # detached engines already start with this umask (engine.runs.process.ENGINE_UMASK).
    previous_umask = os.umask(0o077)
    try:
        fields: dict[str, Any] = {
            "status": "running",
            "message": "",
            "traceback": None,
            "started": now_iso(),
            "ended": None,
            "host": socket.gethostname(),
            **(me.as_meta() if me else {"pid": os.getpid()}),
        }
        if resume_argv is not None:
            fields["resume_argv"] = list(resume_argv)
        run.update_meta(**fields)
        session.events.emit("status", state="running", message=f"pid {os.getpid()} on {fields['host']}")
        session.heartbeat.start()  # after run.json names this process: the beats carry its pid
    except BaseException:
        session.heartbeat.stop()
        os.umask(previous_umask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        session.events.close()
        raise
    try:
        yield session
    except KeyboardInterrupt:
        session._finish("stopped", "interrupted (second SIGINT) before a clean stop")
        raise
    except SystemExit as exc:
        if exc.code in (None, 0):
            session._finish(*(session._outcome or _default_outcome(session)))
        else:
            session._finish("failed", f"exited with status {exc.code}")
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, end="", flush=True)
        session._finish("failed", message, traceback=tb[-8000:])
        if exit_on_error:
            raise SystemExit(1) from exc
        raise
    else:
        session._finish(*(session._outcome or _default_outcome(session)))
    finally:
        session.heartbeat.stop()
        os.umask(previous_umask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def remove_stale_temporaries(run: RunDir) -> list[Path]:
    """Delete the temporaries (``.NAME.*.tmp``) earlier attempts left when they were killed:
    every one in ``checkpoints/``, and those in the run directory older than :data:`STALE_TMP_S`.
    A symlink is removed as a link, never followed. Returns what was removed."""
    removed: list[Path] = []
    now = time.time()
    for folder, min_age in ((run.checkpoints_dir, 0.0), (run.path, STALE_TMP_S)):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            try:
                if min_age and now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def _default_outcome(session: EngineSession) -> tuple[str, str]:
    if session._stop.is_set():
        return "stopped", session.stop_reason or "stop requested"
    return "finished", ""
