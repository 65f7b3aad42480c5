"""A run's numbers for a list of runs, kept current by reading only new bytes. Torch-free.

:class:`EventsSummary` holds what a list needs from one ``events.jsonl`` (last step, last loss,
tokens, tokens/s, last and best validation loss, the planned steps and model size from
``run_info``, the first and last event times, a small loss curve) together with the byte offset
read so far. :meth:`EventsSummary.update` reads only what was appended since the previous call,
so a list of 90 runs costs a ``stat`` per finished run once it has been read.

A large unread stretch (the first look at a long history, or a console that was away) is
*skimmed* instead of parsed line by line: the evaluation and ``run_info`` lines are found with a
byte search, the loss curve is sampled at evenly spaced offsets, and the last metric is found by
reading backwards; only those lines are decoded. A 1.7 MB history costs about a millisecond
instead of a tenth of a second, and the numbers are the same (the curve is a sample either way).

A file that shrank, or was replaced (another inode, or other first bytes), is read again from
its start. The summary is a plain dict (:meth:`EventsSummary.to_json`), so a caller may keep it
between processes (:class:`SummaryIndex`).

Like every reader of the run directory, it works on decoded events
(:func:`engine.runs.events.decode_any`), never on raw records: a ``"nan"`` loss reads as the float
the writer meant, a value of the wrong kind as missing, and a line written under a newer event
schema is not read as the type this version knows by that name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.runs.events import Eval, Event, Metric, RunInfo, UnknownEvent, decode_any
from engine.runs.reader import parse_line

#: Loss points kept for a run's curve; it is halved (every other point) when it reaches twice this.
SPARK_POINTS = 64
#: A stretch of unread bytes longer than this is skimmed rather than parsed line by line.
SKIM_BYTES = 64 << 10
#: Bytes of the file's start that identify it (a replaced file has other first bytes).
HEAD_BYTES = 256
_CHUNK = 4 << 20
#: Keys of the lines a skim decodes (``run_info``'s and ``val_loss``): one regular-expression pass
#: finds both, much faster than decoding every line.
_WANTED = re.compile(rb'_(?:info|loss)"')


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _typed(record: dict[str, Any] | None) -> Event | None:
    """The decoded event of a parsed line; None for no line, or for one written under a newer
    schema (its fields may mean something else, see :func:`engine.runs.events.is_newer`)."""
    if record is None:
        return None
    event = decode_any(record)
    return None if isinstance(event, UnknownEvent) and event.newer else event


@dataclass
class EventsSummary:
    """What one events file said so far, and where reading stopped (see the module docstring)."""

    offset: int = 0  # bytes read so far; always at the start of a line
    inode: int = 0
    head: str = ""  # the file's first bytes (hex), to notice a replaced file
    step: int | None = None
    loss: float | None = None
    tokens_per_s: float | None = None
    tokens: int | None = None
    last_val: float | None = None
    best_val: float | None = None
    total_steps: int | None = None
    params: int | None = None
    trainable_params: int | None = None
    quantization: str = ""
    first_t: float | None = None  # the first event's time (unix seconds)
    last_t: float | None = None  # the latest event's time: the run's last activity
    events: int = 0  # events read line by line (skimmed stretches are not counted)
    skipped: int = 0  # complete lines that were not an event
    spark: list[float] = field(default_factory=list)
    spark_every: int = 1  # steps between two curve points
    spark_step: int | None = None  # step of the latest curve point

    # -- reading ----------------------------------------------------------------------------------
    def update(self, path: Path, max_bytes: int | None = None) -> bool:
        """Read what ``path`` gained since the last call; True when anything was read.

        ``max_bytes`` bounds the bytes *parsed* line by line in one call (a skim is not bounded:
        it decodes a few hundred lines whatever the size)."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_ino != self.inode or st.st_size < self.offset:
                self._reset(st.st_ino)
            if st.st_size == self.offset and len(self.head) >= 2 * min(st.st_size, HEAD_BYTES):
                return False  # nothing new (the common case: one fstat)
            head = os.pread(fd, HEAD_BYTES, 0).hex()
            if not head.startswith(self.head):  # other first bytes: another file
                self._reset(st.st_ino)
            self.head = head
            if st.st_size == self.offset:
                return False
            if st.st_size - self.offset > SKIM_BYTES:
                return self._skim(fd, self.offset, st.st_size)
            return self._parse(fd, st.st_size, max_bytes)
        finally:
            os.close(fd)

    def _reset(self, inode: int) -> None:
        fresh = EventsSummary(inode=inode)
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def _parse(self, fd: int, size: int, max_bytes: int | None) -> bool:
        want = size - self.offset if max_bytes is None else min(size - self.offset, max_bytes)
        data = os.pread(fd, want, self.offset)
        end = data.rfind(b"\n")
        if end < 0:  # an unfinished (or very long) line: wait for its newline
            if want < size - self.offset:
                data = os.pread(fd, size - self.offset, self.offset)
                end = data.rfind(b"\n")
            if end < 0:
                return False
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            record = parse_line(line)
            if record is None:
                self.skipped += 1
                continue
            self.events += 1
            event = _typed(record)
            if event is not None:  # a newer engine's event is not misread
                self._take(event)
        self.offset += end + 1
        return True

    def _take(self, event: Event) -> None:
        """Fold one event into the summary."""
        t = _finite(event.t)
        if t is not None:
            if self.first_t is None:
                self.first_t = t
            self.last_t = t if self.last_t is None else max(self.last_t, t)
        if isinstance(event, Metric):
            self._metric(event)
            self._curve(_int(event.step), _finite(event.loss))
        elif isinstance(event, Eval):
            self._eval(event)
        elif isinstance(event, RunInfo):
            self._run_info(event)

    def _metric(self, metric: Metric) -> None:
        step = _int(metric.step)
        if step is not None:
            self.step = step
        # Not only finite: a diverged run's list row says "nan" (the writer's "nan" decodes to it).
        loss = metric.loss
        self.loss = float(loss) if loss is not None and _number(loss) else None
        self.tokens_per_s = _finite(metric.tokens_per_s)
        tokens = _int(metric.tokens)
        if tokens is not None:
            self.tokens = tokens

    def _eval(self, evaluation: Eval) -> None:
        value = _finite(evaluation.val_loss)
        if value is not None:
            self.last_val = value
            self.best_val = value if self.best_val is None else min(self.best_val, value)
        step = _int(evaluation.step)
        if step is not None and (self.step is None or step > self.step):
            self.step = step

    def _run_info(self, info: RunInfo) -> None:
        for name in ("total_steps", "params", "trainable_params"):
            value = _int(getattr(info, name))
            if value is not None:
                setattr(self, name, value)
        if isinstance(info.quantization, str):
            self.quantization = info.quantization

    def _curve(self, step: int | None, loss: float | None) -> None:
        if loss is None:
            return
        if step is None:  # a metric without a step: count it as the next one
            step = (self.spark_step or 0) + 1
        last = self.spark_step
        if last is not None and last <= step < last + self.spark_every:
            return
        self.spark.append(loss)
        self.spark_step = step
        if len(self.spark) >= 2 * SPARK_POINTS:
            self.spark = self.spark[::2]
            self.spark_every *= 2

    # -- skimming ---------------------------------------------------------------------------------
    def _skim(self, fd: int, start: int, size: int) -> bool:
        """Summarise ``[start, size)`` decoding only the lines that matter (module docstring)."""
        if start == 0 and self.first_t is None:
            first = _typed(parse_line(os.pread(fd, 64 << 10, 0).split(b"\n", 1)[0]))
            self.first_t = None if first is None else _finite(first.t)
        samples = [start + (i + 0.5) * (size - start) / SPARK_POINTS for i in range(SPARK_POINTS)]
        pos, carry = start, b""
        sampled: list[tuple[int | None, float]] = []
        last_chunk = b""
        while pos < size:
            data = carry + os.pread(fd, min(_CHUNK, size - pos), pos)
            base = pos - len(carry)
            pos += len(data) - len(carry)
            end = data.rfind(b"\n")
            if end < 0:
                carry = data
                continue
            chunk, carry = data[: end + 1], data[end + 1 :]
            self._skim_chunk(chunk, base, samples, sampled)
            last_chunk = chunk if len(chunk) >= 64 << 10 else last_chunk[-(64 << 10) :] + chunk
        new_offset = size - len(carry)
        if new_offset == start:
            return False
        if not self._skim_tail(last_chunk[-(64 << 10) :]):
            self._skim_tail(last_chunk)
        # the curve: the sampled points, then every ``spark_every`` steps from here on
        for step, loss in sampled:
            if len(self.spark) >= 2 * SPARK_POINTS:
                self.spark = self.spark[::2]
                self.spark_every *= 2
            self.spark.append(loss)
            self.spark_step = step
        steps = [s for s, _ in sampled if s is not None]
        if len(steps) >= 2:
            self.spark_every = max(self.spark_every, (steps[-1] - steps[0]) // max(1, len(steps) - 1))
        self.offset = new_offset
        return True

    def _skim_chunk(
        self, chunk: bytes, base: int, samples: list[float], sampled: list[tuple[int | None, float]]
    ) -> None:
        hi = 0
        for match in _WANTED.finditer(chunk):
            if match.start() < hi:
                continue  # a second key on a line already read
            lo = chunk.rfind(b"\n", 0, match.start()) + 1
            hi = chunk.find(b"\n", match.end())
            event = _typed(parse_line(chunk[lo:hi]))
            if isinstance(event, RunInfo):
                self._run_info(event)
            elif isinstance(event, Eval):
                self._eval(event)
        # curve samples: the first metric line at or after each sample offset inside this chunk
        while samples and samples[0] < base + len(chunk):
            at = max(0, int(samples.pop(0)) - base)
            at = chunk.find(b'"metric"', at)
            if at < 0:
                break
            lo = chunk.rfind(b"\n", 0, at) + 1
            event = _typed(parse_line(chunk[lo : chunk.find(b"\n", at)]))
            if isinstance(event, Metric):
                loss = _finite(event.loss)
                if loss is not None:
                    sampled.append((_int(event.step), loss))

    def _skim_tail(self, tail: bytes) -> bool:
        """The last metric and the last event time, reading the final lines backwards; False when
        ``tail`` holds no metric."""
        lines = tail.rstrip(b"\n").split(b"\n")
        got_t = got_metric = False
        for line in reversed(lines):
            if got_t and got_metric:
                break
            if (not got_metric and b'"metric"' in line) or not got_t:
                event = _typed(parse_line(line))
                if event is None:
                    continue
                if not got_t:
                    t = _finite(event.t)
                    if t is not None:
                        self.last_t = t if self.last_t is None else max(self.last_t, t)
                        got_t = True
                if not got_metric and isinstance(event, Metric):
                    self._metric(event)
                    got_metric = True
        return got_metric

    # -- keeping ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> EventsSummary | None:
        """The summary kept by :meth:`to_json`, or None when ``data`` is not one (then read again)."""
        if not isinstance(data, dict):
            return None
        try:
            summary = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except TypeError:
            return None
        ints = (summary.offset, summary.inode, summary.spark_every, summary.events, summary.skipped)
        optional = (summary.step, summary.tokens, summary.total_steps, summary.params, summary.spark_step)
        numbers = (summary.loss, summary.tokens_per_s, summary.last_val, summary.best_val)
        if (
            not all(_int(v) is not None for v in ints)
            or not all(v is None or _int(v) is not None for v in (*optional, summary.trainable_params))
            or not all(v is None or _number(v) for v in (*numbers, summary.first_t, summary.last_t))
            or not isinstance(summary.spark, list)
            or not all(_number(v) for v in summary.spark)
            or not isinstance(summary.head, str)
            or not isinstance(summary.quantization, str)
            or summary.spark_every < 1
        ):
            return None  # not what to_json wrote: read the file again
        return summary


class SummaryIndex:
    """Summaries of many runs' events files, keyed by run id, kept in one JSON file.

    :meth:`get` returns the run's summary brought up to date; :meth:`save` writes the index
    atomically (temporary name, then rename; owner-only), and only when something changed. A
    missing or damaged index file is simply rebuilt by reading: it is a cache.
    """

    VERSION = 1

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._summaries: dict[str, EventsSummary] = {}
        self._dirty = False
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            return
        runs = data.get("runs")
        for run_id, item in (runs if isinstance(runs, dict) else {}).items():
            summary = EventsSummary.from_json(item)
            if summary is not None:
                self._summaries[str(run_id)] = summary

    def get(self, run_id: str, events_path: Path, max_bytes: int | None = None) -> EventsSummary:
        summary = self._summaries.get(run_id)
        if summary is None:
            summary = self._summaries[run_id] = EventsSummary()
        if summary.update(events_path, max_bytes):
            self._dirty = True
        return summary

    def forget(self, keep: set[str]) -> None:
        """Drop the runs not in ``keep`` (deleted from the store)."""
        for run_id in set(self._summaries) - keep:
            del self._summaries[run_id]
            self._dirty = True

    def save(self) -> bool:
        """Write the index if it changed; False when there is nothing to write or it could not be
        written (a cache: the next console reads the events again)."""
        if self.path is None or not self._dirty:
            return False
        data = {"version": self.VERSION, "runs": {k: v.to_json() for k, v in self._summaries.items()}}
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        self._dirty = False
        return True
