"""Reading a run's history for the dashboard: a quick sampled sketch first, then everything.

A run with 200k metric events has a ~30 MB ``events.jsonl``; parsing all of it takes a second or
more on a small machine. :func:`sketch_history` reads a bounded amount instead: about ``samples``
single lines at evenly spaced byte offsets across the file (one ``pread`` each, so the cost does
not grow with the file) plus every line of its last ``tail_bytes`` (recent detail and the latest
telemetry, status and run_info). The dashboard paints that at once and then replaces it with the
full history read by :func:`read_full` in bounded chunks. No Textual, no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.runs.events import Event, decode_any
from engine.runs.reader import EventReader, parse_line

#: Files at least this large get a sketch before the full read.
SKETCH_THRESHOLD = 2 << 20
SKETCH_SAMPLES = 600
SKETCH_TAIL = 256 << 10
#: Bytes parsed per chunk of the full read (the worker checks for cancellation between chunks).
CHUNK = 4 << 20

#: Low-rate types worth a sampled line in the sketch (high-rate ones are what is sampled).
_SAMPLED = (b'"metric"', b'"eval"')


def sketch_history(
    path: Path,
    samples: int = SKETCH_SAMPLES,
    tail_bytes: int = SKETCH_TAIL,
) -> tuple[list[Event], int]:
    """Sampled events across ``path`` plus all events of its tail, in file order, and the size
    read up to. Only ``metric``/``eval`` lines are taken from the samples."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return [], 0
    try:
        size = os.fstat(fd).st_size
        tail_start = max(0, size - tail_bytes)
        records: list[dict[str, Any]] = []
        if tail_start > 0 and samples > 0:
            stride = tail_start / samples
            probe = 4096
            for i in range(samples):
                offset = int(i * stride)
                data = os.pread(fd, probe, offset)
                if offset > 0:
                    cut = data.find(b"\n")
                    if cut < 0:
                        continue
                    data = data[cut + 1 :]
                end = data.find(b"\n")
                if end < 0:
                    continue
                line = data[:end]
                if not any(tag in line for tag in _SAMPLED):
                    continue
                record = parse_line(line)
                if record is not None:
                    records.append(record)
        tail = os.pread(fd, size - tail_start, tail_start)
    finally:
        os.close(fd)
    if tail_start > 0:
        cut = tail.find(b"\n")
        tail = tail[cut + 1 :] if cut >= 0 else b""
    end = tail.rfind(b"\n")
    for line in tail[:end].split(b"\n") if end >= 0 else []:
        record = parse_line(line) if line.strip() else None
        if record is not None:
            records.append(record)
    # Samples may repeat a line (stride shorter than a line); keep each once.
    seen: set[tuple[Any, Any, Any]] = set()
    unique = []
    for event in map(decode_any, records):
        key = (event.type, event.t, getattr(event, "step", None))
        if key in seen:
            continue
        seen.add(key)
        unique.append(event)
    return unique, size


def read_full(
    reader: EventReader,
    on_chunk: Callable[[list[Event]], object],
    cancelled: Callable[[], bool] = lambda: False,
    chunk: int = CHUNK,
) -> bool:
    """Read everything ``reader`` has not read yet, in chunks; False if cancelled part-way."""
    while True:
        if cancelled():
            return False
        before = reader.offset
        records = reader.read_events(max_bytes=chunk)
        if records:
            on_chunk(records)
        if reader.offset == before:
            return True
