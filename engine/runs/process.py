"""Engine processes: identity that survives pid reuse, liveness, signals, and detached launch.

A pid alone does not identify a process: after the engine dies (or the machine reboots) the kernel
hands the same number to someone else, and "is pid 4242 alive?" then answers about a stranger. So
a run records a :class:`ProcessIdentity`: the pid plus the process's start time, and on Linux also
the exact start time in clock ticks since boot (``/proc/<pid>/stat`` field 22) and the boot id
(``/proc/sys/kernel/random/boot_id``). A process is the run's process only when all of these match.
Elsewhere ``psutil.Process.create_time()`` is compared with a small tolerance. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.runs.meta import RunMeta

#: psutil's create_time is rounded to clock ticks and boot time to seconds: allow this much slack.
START_TIME_TOLERANCE_S = 1.0

_PROC = Path("/proc")

#: The umask of engine processes: what they create under the home is readable by the owner only.
ENGINE_UMASK = 0o077


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a process is, not just its number: pid, start time (unix seconds) and, on Linux, the
    start time in ticks since boot and the boot id, which make the match exact."""

    pid: int
    start_time: float | None = None
    start_ticks: int | None = None
    boot_id: str | None = None

    def as_meta(self) -> dict[str, Any]:
        """The run.json fields for this identity, as keywords for ``RunDir.update_meta``."""
        return {
            "pid": self.pid,
            "pid_start_time": self.start_time,
            "pid_start_ticks": self.start_ticks,
            "boot_id": self.boot_id,
        }

    @classmethod
    def from_meta(cls, meta: RunMeta) -> ProcessIdentity | None:
        """The identity recorded in run.json, or None when no process was recorded."""
        if meta.pid is None or meta.pid <= 0:
            return None
        return cls(meta.pid, meta.pid_start_time, meta.pid_start_ticks, meta.boot_id)


def boot_id() -> str | None:
    """This boot's random id (Linux), which changes on every reboot."""
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) from ``/proc/<pid>/stat``, or None when there is no such pid."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")".
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return rest[0].decode(), int(rest[19])  # field 3 is state, field 22 is starttime
    except (IndexError, ValueError):
        return None


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the live process ``pid``, or None when there is none."""
    import psutil

    try:
        start_time = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    stat = _proc_stat(pid)
    return ProcessIdentity(pid, start_time, stat[1] if stat else None, boot_id() if stat else None)


def is_alive(identity: ProcessIdentity | None) -> bool:
    """True only when the process recorded in ``identity`` still runs: same pid *and* same start.

    A zombie (exited, not yet reaped by its parent) counts as dead: it will never write again.
    """
    if identity is None:
        return False
    stat = _proc_stat(identity.pid)
    if stat is not None and identity.start_ticks is not None:
        state, ticks = stat
        current_boot = boot_id()
        if identity.boot_id and current_boot and identity.boot_id != current_boot:
            return False  # recorded before a reboot: whatever has this pid now is someone else
        return ticks == identity.start_ticks and state not in ("Z", "X", "x")
    import psutil

    try:
        proc = psutil.Process(identity.pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        created = proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    if identity.start_time is None:
        return False  # a bare pid proves nothing
    return abs(created - identity.start_time) <= START_TIME_TOLERANCE_S


def is_stopped(identity: ProcessIdentity | None) -> bool:
    """True when the recorded process is alive but stopped (``kill -STOP``, Ctrl-Z, a debugger):
    it runs no code, its threads included, until ``SIGCONT``."""
    if not is_alive(identity):
        return False
    assert identity is not None
    stat = _proc_stat(identity.pid)
    if stat is not None:
        return stat[0] in ("T", "t")
    import psutil

    try:
        return psutil.Process(identity.pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def send_signal(identity: ProcessIdentity | None, sig: int) -> bool:
    """Signal the process only if it is still the recorded one; True when the signal was sent.

    Checking identity first means ``canvas stop`` never sends SIGTERM to an unrelated process that
    inherited the pid (a tiny race remains between the check and the kill; the kernel offers no
    pid handle for this on every platform).
    """
    if not is_alive(identity):
        return False
    assert identity is not None
    try:
        os.kill(identity.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _reap(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        proc.wait()


def spawn_detached(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start ``argv`` cut off from this terminal and return its Popen.

    - ``start_new_session``: the child leads a new session and process group with no controlling
      terminal, so closing the terminal, a dropped SSH connection or ``SIGHUP`` sent to the
      launcher's process group (tmux/screen exiting) never reaches it;
    - stdin is ``/dev/null`` (it can never block on, or steal, keyboard input);
    - stdout and stderr append to ``log_path`` (owner-only), unbuffered for Python children;
    - no file descriptors are inherited besides those three;
    - its umask is :data:`ENGINE_UMASK` (077): every file and directory the engine (and the
      libraries it calls: TensorBoard, CodeCarbon, tokenizers) creates is owner-only.

    A daemon thread waits for the child so a long-lived launcher (the console) does not collect
    zombies; a short-lived one (the CLI) simply exits and the child is re-parented to init.
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # O_NOFOLLOW: a symbolic link planted at the log's place is refused (OSError), never followed.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=full_env,
            cwd=str(cwd) if cwd is not None else None,
            umask=ENGINE_UMASK,
        )
    finally:
        os.close(log_fd)
    threading.Thread(target=_reap, args=(proc,), name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def python_argv(module: str, *args: str) -> list[str]:
    """``[sys.executable, "-m", module, *args]``: engine command lines use this interpreter, so a
    detached engine runs in the same virtualenv as the console that started it."""
    return [sys.executable, "-m", module, *args]
