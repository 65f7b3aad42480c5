"""Reading what a data spec names, before anything is prepared: one check for every front end.

``canvas data check`` (without ``--quick``), the pre-flight of ``canvas train`` and the engine's own
check before it prepares data all read local files through this module, so they refuse the same
input with the same message:

* **bytes**: a file read as text that holds NUL bytes, or where more than :data:`MAX_BAD_SHARE` of
  the bytes are not valid UTF-8, is refused, naming the file and the share (a renamed executable, a
  UTF-16 or Latin-1 file). A smaller share of invalid bytes is replaced with U+FFFD and counted, as
  before. ``?errors=replace`` on a source (``errors = "replace"`` in a ``[[data.sources]]`` table)
  accepts the file anyway, invalid bytes replaced; fine-tuning chat data takes the same option.
* **JSON / JSON Lines**: every line is parsed; the first that is not a JSON object is an error naming
  the file and its line number. A column no row has is an error naming the columns there are; a
  column holding something other than text is an error naming the line.
* **CSV / TSV**: the header names the column. **Parquet**: the schema names it, as text.

Torch-free and ``datasets``-free (Parquet schemas are read with ``pyarrow``, imported only then).
Progress goes to a :data:`~engine.data.progress.ProgressCallback` for large files.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from engine.config.errors import ConfigError
from engine.data.progress import ProgressCallback, StageTimer, ignore_progress
from engine.data.spec import DataSpec, SourceSpec, file_format, local_files

#: Above this share of invalid UTF-8 bytes a text file is refused (unless ``errors=replace``).
MAX_BAD_SHARE = 0.02
#: The values of the ``errors`` option of a source: ``check`` (the default) or ``replace``.
ERRORS = ("check", "replace")
#: How the refusal message tells the user to accept a file anyway.
ACCEPT_HINT = (
    "to use it anyway with the bad bytes replaced by U+FFFD, add `?errors=replace` to the source "
    '(`errors = "replace"` in a [[data.sources]] table)'
)
#: The same for fine-tuning chat data (one source, no tables).
CHAT_ACCEPT_HINT = (
    "to use it anyway with the bad bytes replaced by U+FFFD, add `?errors=replace` to the data spec "
    "(`--data chats.jsonl?errors=replace`)"
)

_SURROGATE = re.compile("[\udc80-\udcff]")
_CHUNK = 1 << 22


@dataclass
class ByteScan:
    """What one pass over a file's (decompressed) bytes found."""

    total: int = 0
    invalid: int = 0
    nul: int = 0
    first_invalid: int | None = None
    first_nul: int | None = None
    has_text: bool = False


class _Decoder:
    """Incremental UTF-8 decoding that counts invalid and NUL bytes, whatever the chunk boundaries."""

    def __init__(self) -> None:
        self.scan = ByteScan()
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    def feed(self, chunk: bytes, final: bool = False) -> str:
        scan = self.scan
        text_start = scan.total - len(self._decoder.getstate()[0])
        nul = chunk.find(b"\x00")
        if nul >= 0:
            if scan.first_nul is None:
                scan.first_nul = scan.total + nul
            scan.nul += chunk.count(b"\x00")
        text = self._decoder.decode(chunk, final=final)
        if text:
            if not scan.has_text and text.strip():
                scan.has_text = True
            bad = _SURROGATE.search(text)
            if bad:
                if scan.first_invalid is None:
                    prefix = text[: bad.start()].encode("utf-8", "surrogateescape")
                    scan.first_invalid = text_start + len(prefix)
                scan.invalid += len(_SURROGATE.findall(text))
        scan.total += len(chunk)
        return text


def _open(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """``(decompressed reader, raw file)``: the raw file's position is the progress on disk."""
    raw = path.open("rb")
    suffix = path.suffix.lower()
    if suffix == ".gz":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if suffix == ".bz2":
        import bz2

        return bz2.BZ2File(raw, "rb"), raw
    if suffix == ".xz":
        import lzma

        return lzma.LZMAFile(raw, "rb"), raw
    if suffix == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw)), raw  # type: ignore[arg-type]
    return raw, raw


def scan_bytes(path: Path, chunk_size: int = _CHUNK) -> ByteScan:
    """One pass over a text-like file: size, invalid UTF-8 bytes, NUL bytes, whether it has text."""
    decoder = _Decoder()
    reader, raw = _open(path)
    with raw, reader:
        while chunk := reader.read(chunk_size):
            decoder.feed(chunk)
        decoder.feed(b"", final=True)
    return decoder.scan


def bad_bytes_problem(scan: ByteScan, errors: str = "check") -> str | None:
    """Why a file read as text must be refused (NUL bytes, too many invalid bytes), or None."""
    if errors == "replace" or scan.total == 0:
        return None
    share = scan.invalid / scan.total
    if scan.nul:
        return (
            f"holds {scan.nul:,} NUL byte(s) (first at byte {scan.first_nul}) and "
            f"{share:.1%} invalid UTF-8: it looks binary, not text"
        )
    if share > MAX_BAD_SHARE:
        return (
            f"has {scan.invalid:,} invalid UTF-8 bytes, {share:.1%} of {scan.total:,} (first at byte "
            f"{scan.first_invalid}); more than {MAX_BAD_SHARE:.0%} means it is not UTF-8 text"
        )
    return None


def refuse_bad_bytes(
    path: Path, scan: ByteScan, errors: str, label: str, field_name: str, hint: str = ACCEPT_HINT
) -> None:
    """Raise the :class:`ConfigError` for a file :func:`bad_bytes_problem` refuses."""
    problem = bad_bytes_problem(scan, errors)
    if problem:
        raise ConfigError(
            field_name,
            f"{label}: {path} {problem}. Fix: give a UTF-8 text file (re-encode it, e.g. "
            f"`iconv -f latin1 -t utf-8`), or, {hint}.",
        )


def check_errors_option(value: str, raw: str, field_name: str) -> str:
    """The ``errors`` option's value, checked."""
    value = str(value).strip().lower()
    if value not in ERRORS:
        raise ConfigError(
            field_name,
            f"data source {raw!r}: errors={value!r} is not one of {', '.join(ERRORS)}. Fix: "
            "`?errors=replace` accepts a file with invalid UTF-8 (replaced by U+FFFD); leave it out "
            "to have such files refused.",
        )
    return value


# --- reading whole sources ------------------------------------------------------------------------


@dataclass
class FileReport:
    """What reading one file found."""

    path: Path
    builder: str
    scan: ByteScan = field(default_factory=ByteScan)
    rows: int = 0
    missing: int = 0  # rows without the column (dropped when preparing)
    first_missing: int | None = None  # its line number
    note: str = ""

    def describe(self) -> str:
        size = f"{self.scan.total:,} bytes" if self.scan.total else ""
        parts = [p for p in (size, f"{self.rows:,} rows" if self.rows else "", self.note) if p]
        if self.scan.invalid:
            parts.append(f"{self.scan.invalid:,} invalid UTF-8 bytes replaced")
        if self.missing:
            parts.append(
                f"{self.missing:,} rows without the column skipped (first: line {self.first_missing})"
            )
        return f"{self.path}: " + ", ".join(parts)


@dataclass
class SourceReport:
    source: SourceSpec
    files: list[FileReport] = field(default_factory=list)


class _Progress:
    """Progress over all files of a check, by bytes read from disk; quiet for the first second."""

    def __init__(self, total: int, callback: ProgressCallback) -> None:
        self.timer = StageTimer("check", callback, bytes_total=total, interval_s=0.5)
        self.done = 0
        self.rows = 0
        self.shown = False

    def update(self, raw_position: int, base: int, message: str) -> None:
        self.done = base + raw_position
        import time

        if not self.shown and time.perf_counter() - self.timer.started < 1.0:
            return
        self.shown = True
        self.timer.report(documents=self.rows, bytes_done=self.done, message=message)


def check_data(
    spec: DataSpec, *, progress: ProgressCallback = ignore_progress, field_name: str = "data"
) -> list[SourceReport]:
    """Read every local file ``spec`` names and refuse what preparing it would fail on (or garble).

    Hub and embedded sources are not read here (the Hub's reachability is the engine's check).
    """
    plan: list[tuple[SourceSpec, list[Path]]] = []
    for source in spec.sources:
        files = local_files(source, field_name=field_name) if source.kind == "local" else []
        plan.append((source, files))
    total = sum(f.stat().st_size for _s, files in plan for f in files if f.is_file())
    tracker = _Progress(total, progress)
    reports: list[SourceReport] = []
    base = 0
    for source, files in plan:
        report = SourceReport(source)
        for path in files:
            report.files.append(check_file(path, source, tracker, base, field_name))
            base += path.stat().st_size if path.is_file() else 0
        reports.append(report)
        label = source.to_string()
        if files and source.kind == "local":
            check_column_present(report, label, field_name)
    if tracker.shown:
        tracker.timer.report(documents=tracker.rows, bytes_done=total, message="checked", force=True)
    return reports


def check_file(
    path: Path, source: SourceSpec, tracker: _Progress | None = None, base: int = 0, field_name: str = "data"
) -> FileReport:
    """Read one file of a local source; a :class:`ConfigError` names the file, line and fix."""
    tracker = tracker or _Progress(0, ignore_progress)
    label = source.to_string()
    if path.is_dir():
        return FileReport(path, "dataset", note="dataset folder (read when preparing)")
    builder = file_format(path)[0] or "text"
    if builder == "parquet":
        return _check_parquet(path, source, label, field_name)
    report = FileReport(path, builder)
    decoder = _Decoder()
    reader, raw = _open(path)
    lines = _Lines(path, source, report, label, field_name) if builder in ("json", "csv") else None
    with raw, reader:
        while True:
            chunk = reader.read(_CHUNK)
            text = decoder.feed(chunk, final=not chunk)
            if lines is not None and text:
                lines.feed(text)
            tracker.update(raw.tell(), base, f"reading {path.name}")
            if not chunk:
                break
    report.scan = decoder.scan
    refuse_bad_bytes(path, report.scan, source.errors, f"data source {label!r}", field_name)
    if not report.scan.has_text:
        raise ConfigError(
            field_name,
            f"data source {source.target!r}: {str(path)!r} holds no text (only whitespace). Fix: "
            "remove it from the spec or fill it.",
        )
    if lines is not None:
        lines.finish()
        tracker.rows += report.rows
    return report


class _Lines:
    """Line-by-line reading of JSON Lines (or a whole JSON document) and CSV headers."""

    def __init__(self, path: Path, source: SourceSpec, report: FileReport, label: str, field_name: str):
        self.path, self.source, self.report = path, source, report
        self.label, self.field_name = label, field_name
        self.pending = ""
        self.number = 0
        self.whole: list[str] | None = None  # a JSON array / pretty-printed object: read whole
        self.first_keys: list[str] | None = None
        self.csv_header: list[str] | None = None
        self.seen_content = False

    def feed(self, text: str) -> None:
        if self.whole is not None:
            self.whole.append(text)
            return
        data = self.pending + text
        *complete, self.pending = data.split("\n")
        for i, line in enumerate(complete):
            self._line(line)
            if self.whole is not None:
                self.whole = [f"{rest}\n" for rest in complete[i:]] + [self.pending]
                self.pending = ""
                return

    def finish(self) -> None:
        if self.whole is None and self.pending:
            line, self.pending = self.pending, ""
            self._line(line)
            if self.whole is not None:
                self.whole = [line]
        if self.whole is not None:
            self._whole_json("".join(self.whole))

    def _line(self, line: str) -> None:
        self.number += 1
        if self.report.builder == "csv":
            if self.csv_header is None and line.strip():
                self._csv_header(line)
            elif line.strip():
                self.report.rows += 1
            return
        stripped = line.strip()
        if not stripped:
            return
        first = not self.seen_content
        self.seen_content = True
        if first and stripped[0] == "[":
            self.whole = []  # a JSON array: the rest is read whole
            return
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            if first and stripped.startswith("{"):
                self.whole = []  # maybe one pretty-printed object spanning lines
                return
            self._bad_line(exc, stripped)
        self._row(value, f"line {self.number}")

    def _bad_line(self, exc: json.JSONDecodeError, stripped: str) -> None:
        raise ConfigError(
            self.field_name,
            f"data source {self.label!r}: {self.path} line {self.number} is not JSON ({exc.msg} at "
            f"column {exc.colno}): {stripped[:60]!r}. Fix: make every line one JSON object (JSON "
            'Lines), e.g. {"text": "…"}, or delete the line.',
        )

    def _row(self, value: object, where: str) -> None:
        column = self.source.column
        if not isinstance(value, dict):
            raise ConfigError(
                self.field_name,
                f"data source {self.label!r}: {self.path} {where} is JSON but not an object (found "
                f'{type(value).__name__}). Fix: make every row an object such as {{"{column}": "…"}}.',
            )
        self.report.rows += 1
        if self.first_keys is None:
            self.first_keys = [str(k) for k in value]
        if column not in value or value[column] is None:
            self.report.missing += 1
            if self.report.first_missing is None:
                self.report.first_missing = self.number
            return
        text = value[column]
        if not isinstance(text, str):
            raise ConfigError(
                self.field_name,
                f"data source {self.label!r}: column {column!r} in {self.path.name} holds a "
                f"{_json_type(text)} at {where}, not text. Fix: name a text column with `#COLUMN` (this row "
                f"has {', '.join(map(str, value)) or 'no columns'}).",
            )

    def _whole_json(self, text: str) -> None:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                self.field_name,
                f"data source {self.label!r}: {self.path} is not valid JSON at line {exc.lineno}, "
                f"column {exc.colno}: {exc.msg}. Fix: make it one JSON array of objects, or JSON "
                'Lines (one object a line, e.g. {"text": "…"}).',
            ) from None
        if isinstance(value, list):
            for number, item in enumerate(value, start=1):
                self._row(item, f"item {number}")
        elif isinstance(value, dict):
            # One object: columns of lists (how `datasets` reads it) or a single row.
            if all(isinstance(v, list) for v in value.values()) and value:
                self.first_keys = [str(k) for k in value]
                self.report.rows = max(len(v) for v in value.values())
                if self.source.column not in value:
                    self.report.missing = self.report.rows
            else:
                self._row(value, "object")

    def _csv_header(self, line: str) -> None:
        sep = "\t" if ".tsv" in [s.lower() for s in self.path.suffixes] else ","
        self.csv_header = next(csv.reader([line], delimiter=sep), [])
        self.first_keys = self.csv_header
        if self.source.column not in self.csv_header:
            raise ConfigError(
                self.field_name,
                f"data source {self.label!r}: {self.path} has no column {self.source.column!r}; its "
                f"header names {', '.join(self.csv_header) or 'nothing'}. Fix: name the text column "
                f"with `#COLUMN` (e.g. `{self.source.target}#{(self.csv_header or ['text'])[0]}`).",
            )


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def check_column_present(report: SourceReport, label: str, field_name: str) -> None:
    """A JSON column that no row of any file has is an error (preparing would give no documents)."""
    json_files = [f for f in report.files if f.builder == "json"]
    if not json_files or any(f.rows > f.missing for f in json_files):
        return
    column = report.source.column
    first = json_files[0]
    keys = _keys_of(first.path) if first.rows else []
    raise ConfigError(
        field_name,
        f"data source {label!r}: {first.path}{' (or any other file)' if len(json_files) > 1 else ''} "
        f"has no column {column!r} in any row; "
        + (f"the columns are {', '.join(keys)}. " if keys else "")
        + "Fix: name the text column with `#COLUMN`"
        + (f" (e.g. `{report.source.target}#{keys[0]}`)." if keys else "."),
    )


def _keys_of(path: Path) -> list[str]:
    reader, raw = _open(path)
    with raw, reader:
        head = reader.read(1 << 20).decode("utf-8", errors="replace")
    for line in head.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            break
        if isinstance(value, dict):
            return [str(k) for k in value]
    try:
        value = json.loads(head)
    except json.JSONDecodeError:
        return []
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [str(k) for k in value[0]]
    return [str(k) for k in value] if isinstance(value, dict) else []


def _check_parquet(path: Path, source: SourceSpec, label: str, field_name: str) -> FileReport:
    try:
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as exc:
        raise ConfigError(
            field_name,
            f"data source {label!r}: {path} is not a readable Parquet file ({str(exc).strip()[:120]}). "
            "Fix: check the file (it may be truncated or not Parquet at all).",
        ) from None
    names = list(schema.names)
    if source.column not in names:
        raise ConfigError(
            field_name,
            f"data source {label!r}: {path} has no column {source.column!r}; the columns are "
            f"{', '.join(names)}. Fix: name the text column with `#COLUMN` (e.g. "
            f"`{source.target}#{names[0] if names else 'text'}`).",
        )
    kind = str(schema.field(source.column).type)
    if kind not in ("string", "large_string", "string_view"):
        raise ConfigError(
            field_name,
            f"data source {label!r}: column {source.column!r} in {path} holds {kind}, not text. Fix: "
            f"name a text column with `#COLUMN` (the columns are {', '.join(names)}).",
        )
    report = FileReport(path, "parquet", rows=meta.num_rows)
    report.scan.total = path.stat().st_size
    return report
