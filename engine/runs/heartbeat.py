"""The engine's heartbeat: proof of life that works across hosts. Torch-free.

Every engine process (pre-training, fine-tuning, evaluation, serving: whatever runs inside
:func:`engine.runs.session.run_context`) rewrites ``<run>/heartbeat.json`` every
:data:`HEARTBEAT_INTERVAL_S` seconds from a daemon thread: the time, its host and pid, and the
progress of its main loop (the last step it reported, when it last reached a step boundary, how
long its steps take). The file is replaced atomically (temporary name, rename) and is owner-only.

Readers (:mod:`engine.runs.status`) use it two ways:

- **Silence** (:func:`is_stale`): no beat for :data:`MISSED_BEATS` intervals. ``kill -STOP``
  stops every thread, the heartbeat's too, so a stopped engine goes silent; so does a host that
  lost power or its network. For a run on another host this is the only evidence there is, and
  :data:`CLOCK_SKEW_S` more is allowed (the two clocks and the shared file system's caches may
  disagree by a few seconds).
- **No progress** (:func:`stalled_since`): the thread keeps beating while the main loop hangs (a
  dead-locked collective, a stuck read), so each beat also carries the time the loop last reached a
  step boundary. A run is called stalled only when it is past its first step and the gap is far
  beyond anything it showed before (:data:`STALL_MIN_S`, :data:`STALL_FACTOR` times its usual
  step time and twice its longest gap so far, which covers validation passes and checkpoints).
  Deliberately conservative: a false alarm teaches people to ignore the message.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The heartbeat file in the run directory.
HEARTBEAT_FILE = "heartbeat.json"
#: Seconds between beats.
HEARTBEAT_INTERVAL_S = 3.0
#: Environment variable that overrides the interval (seconds; tests use a fraction of one).
INTERVAL_ENV = "CANVAS_HEARTBEAT_S"
#: A heartbeat is stale after this many intervals without a beat.
MISSED_BEATS = 5
#: Extra seconds allowed for a run on another host: clock differences and NFS attribute caching.
CLOCK_SKEW_S = 15.0
#: A fresh heartbeat whose loop made no progress for this long (and see :data:`STALL_FACTOR`) is
#: reported as "not progressing".
STALL_MIN_S = 600.0
#: ... and for this many times its usual gap between step boundaries.
STALL_FACTOR = 20.0
#: Weight of the newest gap in the usual gap between step boundaries (an exponential average).
_EMA = 0.1


def interval_s() -> float:
    """The beat interval: :data:`INTERVAL_ENV` when set to a positive number, else the default."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return HEARTBEAT_INTERVAL_S
    return value if math.isfinite(value) and value > 0 else HEARTBEAT_INTERVAL_S


@dataclass(frozen=True)
class Heartbeat:
    """One beat as written to ``heartbeat.json``.

    ``t`` is the beat's time (unix seconds, the writer's clock); ``interval_s`` the writer's beat
    interval; ``step`` the last step the engine reported (None before its first); ``progress_t``
    when its main loop last reached a step boundary; ``gap_s`` its usual gap between boundaries and
    ``longest_gap_s`` the longest so far (None until two boundaries were seen)."""

    t: float
    host: str
    pid: int
    interval_s: float = HEARTBEAT_INTERVAL_S
    started: float | None = None
    step: int | None = None
    progress_t: float | None = None
    gap_s: float | None = None
    longest_gap_s: float | None = None
    v: int = 1

    def age(self, now: float | None = None) -> float:
        """Seconds since the beat (never negative: a clock ahead of ours reads as just now)."""
        return max(0.0, (time.time() if now is None else now) - self.t)

    def stale_after(self, *, remote: bool = False) -> float:
        """Seconds of silence after which this heartbeat is stale."""
        return MISSED_BEATS * max(self.interval_s, 0.01) + (CLOCK_SKEW_S if remote else 0.0)

    def is_stale(self, now: float | None = None, *, remote: bool = False) -> bool:
        return self.age(now) > self.stale_after(remote=remote)

    def stalled_since(self, now: float | None = None) -> float | None:
        """When the main loop last made progress, if it has been stuck since by the conservative
        rule of the module docstring; None while it progresses (or nothing can be said)."""
        if self.step is None or self.progress_t is None or self.gap_s is None:
            return None  # before the first step: data preparation and compilation take their time
        now = time.time() if now is None else now
        limit = max(STALL_MIN_S, STALL_FACTOR * self.gap_s, 2.0 * (self.longest_gap_s or 0.0))
        return self.progress_t if now - self.progress_t > limit else None


def heartbeat_path(run_path: Path | str) -> Path:
    return Path(run_path) / HEARTBEAT_FILE


def read_heartbeat(run_path: Path | str) -> Heartbeat | None:
    """The run's last heartbeat, or None when there is none or it cannot be read (a link, garbage,
    a field of the wrong type): a reader then knows nothing, which is what it reports."""
    path = heartbeat_path(run_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(64 << 10))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        beat = Heartbeat(
            t=_num(data["t"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            interval_s=_num(data.get("interval_s", HEARTBEAT_INTERVAL_S)),
            started=_opt_num(data.get("started")),
            step=None if data.get("step") is None else int(data["step"]),
            progress_t=_opt_num(data.get("progress_t")),
            gap_s=_opt_num(data.get("gap_s")),
            longest_gap_s=_opt_num(data.get("longest_gap_s")),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return beat


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _opt_num(value: Any) -> float | None:
    return None if value is None else _num(value)


def write_heartbeat(run_path: Path | str, beat: Heartbeat) -> None:
    """Replace ``heartbeat.json`` atomically: an owner-only temporary file, then a rename (which
    replaces a link planted at the name, never writing through it)."""
    path = heartbeat_path(run_path)
    tmp = path.with_name(f".{HEARTBEAT_FILE}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        os.write(fd, (json.dumps(asdict(beat)) + "\n").encode())
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class HeartbeatWriter:
    """Beats for one engine process: :meth:`start` writes the first beat at once and starts the
    daemon thread; the main loop calls :meth:`progress` at every step boundary (the session does);
    :meth:`stop` ends the thread. Writing errors are ignored: a heartbeat must never take a
    training run down (a deleted run directory is the session's business)."""

    def __init__(self, run_path: Path | str, *, interval: float | None = None) -> None:
        self.run_path = Path(run_path)
        self.interval = interval if interval is not None else interval_s()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self.step: int | None = None
        self.progress_t: float | None = None
        self.gap_s: float | None = None
        self.longest_gap_s: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def progress(self, step: int | None = None) -> None:
        """The main loop reached a step boundary (``step``: the step it just did, when known)."""
        now = time.time()
        if self.progress_t is not None:
            gap = now - self.progress_t
            self.gap_s = gap if self.gap_s is None else (1 - _EMA) * self.gap_s + _EMA * gap
            self.longest_gap_s = max(self.longest_gap_s or 0.0, gap)
        self.progress_t = now
        if step is not None:
            self.step = step

    def beat(self) -> Heartbeat:
        return Heartbeat(
            t=time.time(),
            host=self.host,
            pid=self.pid,
            interval_s=self.interval,
            started=self.started,
            step=self.step,
            progress_t=self.progress_t,
            gap_s=self.gap_s,
            longest_gap_s=self.longest_gap_s,
        )

    def write(self) -> None:
        with contextlib.suppress(OSError):
            write_heartbeat(self.run_path, self.beat())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def start(self) -> HeartbeatWriter:
        self.write()
        self._thread = threading.Thread(target=self._loop, name="canvas-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread, after one last beat: the file then says how far the engine got."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, 2 * self.interval))
            self._thread = None
            self.write()


def fmt_clock(t: float, now: float | None = None) -> str:
    """A moment as people read it: ``HH:MM:SS`` today, with the date on another day (local time)."""
    now = time.time() if now is None else now
    same_day = time.localtime(t)[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.localtime(t))
