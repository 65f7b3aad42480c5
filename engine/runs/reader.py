"""Reading a run's files while the engine is still writing them. Torch-free.

- :class:`LineTail` follows a growing file by byte offset and hands out only *complete* lines, so
  a line the engine is half-way through writing (or a torn last line after ``kill -9``) is never
  parsed; it is returned once its newline arrives.
- :class:`EventReader` turns those lines into typed events (:meth:`EventReader.read_events`,
  decoded by :func:`engine.runs.events.decode_any`; an unknown type arrives as an
  :class:`~engine.runs.events.UnknownEvent`) or, for ``--raw`` output and old callers, into the
  record dicts (:meth:`EventReader.read_new`). Lines that are not a JSON object with a string
  ``type`` (a foreign or damaged line) are counted in :attr:`EventReader.skipped` and skipped: a
  damaged line must never take the console down, and a front end says so *once*
  (:func:`engine.runs.format.skipped_note`), not once per line.
- :func:`downsample` thins a long history (100k+ metric points) for a first paint, keeping the
  first and last point and each bucket's minimum and maximum so loss spikes stay visible, and
  every low-rate event (status, eval, checkpoint, log, run_info). It thins typed events and
  record dicts alike.
- :func:`tail_text`, :func:`last_events` and :func:`last_records` read from the *end* of a file,
  so listing many runs or showing a crashed run's log tail costs the same for a 1 GB file as for
  a small one.

The reader keeps no file open between calls: the engine may be on another host writing over NFS,
and an open handle would pin a deleted run directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from engine.runs.events import HIGH_RATE_TYPES, Event, decode_any

#: A record dict or a typed event: :func:`downsample` keeps whichever it is given.
R = TypeVar("R", dict[str, Any], Event)

#: The field each high-rate type is thinned by (its extremes survive downsampling).
_PRIMARY = {
    "metric": "loss",
    "gpu": "util",
    "system": "cpu_pct",
    "carbon": "emissions_kg",
    "progress": "done",
}


class LineTail:
    """Complete lines appended to ``path`` since the last call, tracked by byte offset."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset

    def read_lines(self, max_bytes: int | None = None) -> list[bytes]:
        """New complete lines (without their newline). An unfinished last line stays pending.

        ``max_bytes`` bounds one call's work (the console reads in chunks and yields between
        them); a single line longer than that is still read whole. A file that shrank was replaced
        or truncated: reading restarts from its beginning.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            size = os.fstat(fd).st_size
            if size < self.offset:
                self.offset = 0
            if size == self.offset:
                return []
            want = size - self.offset if max_bytes is None else min(max_bytes, size - self.offset)
            data = os.pread(fd, want, self.offset)
            end = data.rfind(b"\n")
            while end < 0 and self.offset + len(data) < size:  # one very long line
                more = os.pread(fd, max(len(data), 1 << 16), self.offset + len(data))
                if not more:
                    break
                data += more
                end = data.rfind(b"\n")
        finally:
            os.close(fd)
        if end < 0:
            return []
        self.offset += end + 1
        return data[:end].split(b"\n")

    def read_partial(self) -> bytes:
        """Whatever follows the last complete line (an unterminated line), without consuming it:
        shown once at the end, e.g. the last words of a process killed mid-line."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                return fh.read()
        except FileNotFoundError:
            return b""


def parse_line(line: bytes) -> dict[str, Any] | None:
    """The event record in one line, or None when it is not a JSON object with a string ``type``."""
    try:
        record = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return None
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return None
    return record


class EventReader:
    """Incremental reader of ``events.jsonl``.

    ``read_events()`` returns the typed events appended since the previous call (``read_new()``
    the same as record dicts); ``offset`` can be saved and handed to a new reader to continue
    where an earlier one stopped. ``skipped`` (also named ``garbage``) counts the complete lines
    that were not an event (never fatal); a torn last line is not counted, it is read once whole.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self._tail = LineTail(path, offset)
        self.garbage = 0
        self.records_read = 0

    @property
    def path(self) -> Path:
        return self._tail.path

    @property
    def offset(self) -> int:
        return self._tail.offset

    @property
    def skipped(self) -> int:
        """Complete lines read so far that were not a JSON object with a string ``type``."""
        return self.garbage

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        """Records of the complete lines appended since the last call, in file order."""
        records = []
        for line in self._tail.read_lines(max_bytes):
            if not line.strip():
                continue
            record = parse_line(line)
            if record is None:
                self.garbage += 1
            else:
                records.append(record)
        self.records_read += len(records)
        return records

    def read_history(self, max_points: int | None = 2000) -> list[dict[str, Any]]:
        """Everything not read yet, with each high-rate series thinned to about ``max_points``.

        For the first paint of a long run; afterwards ``read_new`` continues from the end.
        """
        records = self.read_new()
        return records if max_points is None else downsample(records, max_points)

    def read_events(self, max_bytes: int | None = None) -> list[Event]:
        """Typed events of the complete lines appended since the last call, in file order; an
        unknown type arrives as an :class:`~engine.runs.events.UnknownEvent`."""
        return [decode_any(record) for record in self.read_new(max_bytes)]

    def read_event_history(self, max_points: int | None = 2000) -> list[Event]:
        """:meth:`read_history` as typed events: each high-rate series thinned to about
        ``max_points``, every other event kept."""
        events = self.read_events()
        return events if max_points is None else downsample(events, max_points)


def _value(item: dict[str, Any] | Event, name: str) -> Any:
    """Field ``name`` of a record (dict) or a typed event (attribute; its ``type`` for "type")."""
    if isinstance(item, dict):
        return item.get(name)
    return item.type if name == "type" else getattr(item, name, None)


def _series_key(record: dict[str, Any] | Event) -> tuple[str, Any] | None:
    kind = _value(record, "type")
    if kind not in HIGH_RATE_TYPES:
        return None
    return (kind, _value(record, "index"))  # one series per GPU


def _thin(indices: Sequence[int], values: Callable[[int], float | None], max_points: int) -> list[int]:
    """Keep first, last, and the min and max of each bucket (order-preserving) out of ``indices``."""
    if len(indices) <= max_points:
        return list(indices)
    buckets = max(1, (max_points - 2) // 2)
    inner = indices[1:-1]
    keep = {indices[0], indices[-1]}
    size = len(inner) / buckets
    for b in range(buckets):
        chunk = inner[int(b * size) : int((b + 1) * size)]
        if not chunk:
            continue
        numeric = [(v, i) for i in chunk if isinstance(v := values(i), (int, float)) and v == v]
        if numeric:
            keep.add(min(numeric)[1])
            keep.add(max(numeric)[1])
        else:
            keep.add(chunk[-1])
    return sorted(keep)


def _getter(records: Sequence[dict[str, Any]] | Sequence[Event], name: str) -> Callable[[int], Any]:
    """The value of field ``name`` of ``records[i]``, for :func:`_thin`."""
    return lambda i: _value(records[i], name)


def downsample(records: Sequence[R], max_points: int) -> list[R]:
    """At most about ``max_points`` records per high-rate series, all others kept, order kept.

    ``records`` are record dicts or typed events (both answer ``get``)."""
    series: dict[tuple[str, Any], list[int]] = {}
    keep: list[int] = []
    for i, record in enumerate(records):
        key = _series_key(record)
        if key is None:
            keep.append(i)
        else:
            series.setdefault(key, []).append(i)
    for (kind, _), indices in series.items():
        keep.extend(_thin(indices, _getter(records, _PRIMARY.get(kind, "")), max(2, max_points)))
    return [records[i] for i in sorted(keep)]


def _read_back(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return b""
    if start > 0:  # drop the partial first line
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
    return data


def line_offset_near_end(path: Path, max_bytes: int) -> int:
    """A byte offset at the start of a line, at most about ``max_bytes`` before the end of
    ``path`` (0 for a small or missing file): where to start a :class:`LineTail` that should show
    only the recent past."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return 0
    if size <= max_bytes:
        return 0
    with open(path, "rb") as fh:
        fh.seek(size - max_bytes)
        data = fh.read(max_bytes)
    cut = data.find(b"\n")
    return size if cut < 0 else size - max_bytes + cut + 1


def tail_text(path: Path, lines: int = 20, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``lines`` lines of a text file (an unterminated last line included), decoded
    leniently: for showing the end of ``engine.log`` after a crash."""
    if lines <= 0:
        return []
    data = _read_back(Path(path), max_bytes)
    text = data.decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def last_records(path: Path, types: Iterable[str], max_bytes: int = 1 << 20) -> dict[str, dict[str, Any]]:
    """The last record of each of ``types`` within the final ``max_bytes`` of an events file."""
    wanted = set(types)
    found: dict[str, dict[str, Any]] = {}
    # A record of type X holds the string "X": lines without any missing type's name are skipped
    # unparsed (decoding every line of the last megabyte, looking for a type that is not there,
    # cost ~30 ms a run and made `canvas runs` slow on a big store).
    needles = {name: json.dumps(name).encode() for name in wanted}
    data = _read_back(Path(path), max_bytes)
    for line in reversed(data.split(b"\n")):
        missing = [needles[name] for name in wanted if name not in found]
        if not missing:
            break
        if b'"type"' not in line or not any(needle in line for needle in missing):
            continue
        record = parse_line(line)
        if record is not None and record["type"] in wanted and record["type"] not in found:
            found[record["type"]] = record
    return found


def last_events(
    path: Path, types: Iterable[type[Event]], max_bytes: int = 1 << 20
) -> dict[type[Event], Event]:
    """The last event of each of the classes ``types`` within the final ``max_bytes`` of an events
    file, keyed by class (``last[Metric]``); absent classes are missing from the result."""
    by_name = {cls.TYPE: cls for cls in types}
    records = last_records(path, by_name, max_bytes)
    return {by_name[name]: decode_any(record) for name, record in records.items()}
