"""Loading sources into ``datasets`` tables of one ``text`` column, with errors a user can act on.

Everything here runs before any tokenizer is trained, so bad input fails in seconds:

* local files are scanned once (decompressing on the fly) for emptiness and invalid UTF-8;
* Hub access is checked with a 1.5 s TCP connect to the Hub, because ``datasets`` retries for
  23–46 s on a machine without a network; offline the error says so and how to use local files;
* ``datasets`` errors (a bad JSON line, a missing column) are translated into one paragraph that
  names the file, the line or the columns there are, and the fix.

Non-UTF-8 policy: **replace and count, refuse binary**. Invalid bytes become U+FFFD (one per byte,
Python's ``errors="replace"`` rule); the count and the first offset are reported in a progress
message and in the manifest, and preparation goes on. One bad byte in a 10 GB crawl should not stop
a run. A file with NUL bytes or more than 2% invalid bytes is refused unless its source says
``errors=replace`` (:mod:`engine.data.check`, which also reads every JSON line).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.config.errors import ConfigError
from engine.data.progress import ProgressCallback, StageTimer, ignore_progress
from engine.data.spec import SourceSpec, file_format, is_dataset_folder, is_saved_dataset, local_files

if TYPE_CHECKING:  # pragma: no cover
    import datasets

_TRUE = ("1", "true", "yes", "on")
_SURROGATE = re.compile("[\udc80-\udcff]")
_reachable_cache: dict[str, tuple[float, bool]] = {}


# --- the network ---------------------------------------------------------------------------------


def offline_by_env() -> bool:
    """True when the user told Hugging Face libraries not to use the network."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def hub_host() -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return urllib.parse.urlparse(endpoint).hostname or "huggingface.co"


def hub_reachable(timeout: float = 1.5) -> bool:
    """A TCP connect to the Hub, remembered for a minute: fast where ``datasets`` would hang."""
    host = hub_host()
    cached = _reachable_cache.get(host)
    if cached and time.monotonic() - cached[0] < 60:
        return cached[1]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _reachable_cache[host] = (time.monotonic(), ok)
    return ok


#: The local alternative an offline error suggests (fine-tuning data names its own).
LOCAL_EXAMPLE = "`--data ./corpus.jsonl#text` or a folder of .txt files"


def offline_message(what: str, local_example: str = LOCAL_EXAMPLE) -> str:
    return (
        f"{what} is on the Hugging Face Hub, but this machine is offline (cannot reach {hub_host()}). "
        f"Fix: point --data at local files instead (e.g. {local_example}), use `--data embedded` "
        "(built in, no network), or, if it is already in the Hugging Face cache, set "
        "HF_HUB_OFFLINE=1 to use the cached copy."
    )


def ensure_hub_reachable(what: str, field_name: str, local_example: str = LOCAL_EXAMPLE) -> None:
    """Raise the offline :class:`ConfigError` in ~1.5 s instead of letting ``datasets`` hang.

    With ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, libraries use their cache without
    touching the network, so there is nothing to check here; a cache miss is translated later.
    """
    if not offline_by_env() and not hub_reachable():
        raise ConfigError(field_name, offline_message(what, local_example))


# --- scanning local files ------------------------------------------------------------------------


@dataclass
class SourceCheck:
    """What the scan of one source found; also the per-source part of the manifest."""

    source: SourceSpec
    files: list[Path] = field(default_factory=list)
    file_bytes: int = 0
    invalid_bytes: int = 0
    first_invalid: str | None = None
    dirty: dict[Path, int] = field(default_factory=dict)


def open_decompressed(path: Path) -> IO[bytes]:
    """A binary reader of a file's content, whatever compression its suffix names."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        import gzip

        return gzip.open(path, "rb")
    if suffix == ".bz2":
        import bz2

        return bz2.open(path, "rb")
    if suffix == ".xz":
        import lzma

        return lzma.open(path, "rb")
    if suffix == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True)
    return path.open("rb")


def scan_file(path: Path, chunk_size: int = 1 << 22) -> tuple[int, int, int | None, bool]:
    """``(bytes, invalid_bytes, first_invalid_offset, has_text)`` for a text-like file, one pass."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    total = invalid = 0
    first: int | None = None
    has_text = False
    with open_decompressed(path) as fh:
        while True:
            chunk = fh.read(chunk_size)
            final = not chunk
            text_start = total - len(decoder.getstate()[0])  # pending bytes begin this text
            text = decoder.decode(chunk, final=final)
            if text:
                if not has_text and text.strip():
                    has_text = True
                bad = _SURROGATE.search(text)
                if bad:
                    if first is None:
                        first = text_start + len(text[: bad.start()].encode("utf-8", "surrogateescape"))
                    invalid += len(_SURROGATE.findall(text))
            total += len(chunk)
            if final:
                break
    return total, invalid, first, has_text


def check_source(source: SourceSpec, *, field_name: str = "data") -> SourceCheck:
    """Cheap checks for one source, before anything is loaded: paths, emptiness, UTF-8, network."""
    check = SourceCheck(source=source)
    if source.kind == "hf":
        ensure_hub_reachable(f"dataset {source.target!r}", field_name)
        return check
    if source.kind != "local":
        return check
    from engine.data.check import SourceReport, check_column_present, check_file

    check.files = local_files(source, field_name=field_name)
    report = SourceReport(source)
    for path in check.files:
        if path.is_dir() or file_format(path)[0] == "parquet":
            check.file_bytes += path.stat().st_size if path.is_file() else 0
            if path.is_file():
                check_file(path, source, field_name=field_name)  # the Parquet schema names the column
            continue
        # Reads it all: bytes (NUL, invalid UTF-8), JSON lines, the column; raises on what is wrong.
        report.files.append(check_file(path, source, field_name=field_name))
        scan = report.files[-1].scan
        check.file_bytes += scan.total
        if scan.invalid:
            check.invalid_bytes += scan.invalid
            check.dirty[path] = scan.invalid
            if check.first_invalid is None:
                check.first_invalid = f"{path} at byte {scan.first_invalid}"
    check_column_present(report, source.to_string(), field_name)
    return check


# --- loading -------------------------------------------------------------------------------------


def local_cache_dir() -> str:
    """Where ``datasets`` keeps the Arrow copies of local files: ours, unless the user chose one."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    from engine.locations import cache_dir

    return str(cache_dir() / "hf-datasets")


def load_source(
    check: SourceCheck,
    work_dir: Path,
    *,
    progress: ProgressCallback = ignore_progress,
    field_name: str = "data",
) -> datasets.Dataset:
    """Load one checked source as a ``Dataset`` with a single ``text`` column of non-empty strings."""
    import datasets

    datasets.disable_progress_bars()
    source = check.source
    if source.kind == "embedded":
        from engine.data.embedded import corpus_path

        ds = _load_builder("json", [corpus_path()], source, work_dir, field_name)
    elif source.kind == "hf":
        ds = _load_hub(source, work_dir, progress, field_name)
    elif len(check.files) == 1 and check.files[0].is_dir():
        ds = _load_folder(check.files[0], source, field_name)
    else:
        groups: dict[str, list[Path]] = {}
        for path in check.files:
            groups.setdefault(file_format(path)[0] or "text", []).append(path)
        parts = []
        for builder, files in groups.items():
            clean = [_repaired(f, check, work_dir) if builder != "text" else f for f in files]
            parts.append(
                _load_builder(
                    builder,
                    clean,
                    source,
                    work_dir,
                    field_name,
                    replace_errors=builder == "text" and any(f in check.dirty for f in files),
                )
            )
        ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if source.limit is not None and source.kind != "hf":
        ds = ds.select(range(min(source.limit, len(ds))))
    return _non_empty(ds, work_dir)


def _repaired(path: Path, check: SourceCheck, work_dir: Path) -> Path:
    """A UTF-8-clean copy of a dirty JSON/CSV file (invalid bytes → U+FFFD); clean files as they are."""
    if path not in check.dirty:
        return path
    _builder, compression = file_format(path)
    name = path.name[: -len(compression)] if compression else path.name
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    target = work_dir / "repaired" / f"{digest}-{name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    with open_decompressed(path) as src, target.open("w", encoding="utf-8") as dst:
        while chunk := src.read(1 << 22):
            dst.write(decoder.decode(chunk))
        dst.write(decoder.decode(b"", final=True))
    return target


def _load_builder(
    builder: str,
    files: list[Path],
    source: SourceSpec,
    work_dir: Path,
    field_name: str,
    *,
    replace_errors: bool = False,
) -> datasets.Dataset:
    import datasets

    kwargs: dict[str, Any] = {}
    if builder == "text":
        kwargs["sample_by"] = source.sample_by
        kwargs["keep_linebreaks"] = True
        if replace_errors:
            kwargs["encoding_errors"] = "replace"
    if builder == "csv" and any(
        f.name.lower().removesuffix(f.suffix if file_format(f)[1] else "").endswith(".tsv") for f in files
    ):
        kwargs["sep"] = "\t"
    try:
        with quiet_datasets_errors():  # its own "JSON parse error … row N": ours names the line instead
            ds = datasets.load_dataset(
                builder,
                data_files=[str(f) for f in files],
                split="train",
                cache_dir=local_cache_dir(),
                **kwargs,
            )
    except Exception as exc:
        raise _explain_load_error(exc, builder, files, source, field_name) from None
    column = "text" if builder == "text" else source.column
    return _text_column(ds, column, source, field_name, where=", ".join(f.name for f in files[:3]))


@contextlib.contextmanager
def quiet_datasets_errors() -> Iterator[None]:
    """Silence ``datasets``' own error log lines (they duplicate the exception we translate)."""
    import logging

    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_folder(path: Path, source: SourceSpec, field_name: str) -> datasets.Dataset:
    import datasets

    try:
        if is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            ds = loaded[source.split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            assert is_dataset_folder(path)
            ds = datasets.load_dataset(
                str(path), name=source.config, split=source.split, cache_dir=local_cache_dir()
            )
    except KeyError:
        raise ConfigError(
            field_name,
            f"data source {source.target!r}: the saved dataset has no split "
            f"{source.split!r} (it has {', '.join(loaded)}). Fix: add `?split=NAME`.",
        ) from None
    except Exception as exc:
        raise ConfigError(
            field_name,
            f"data source {source.target!r}: `datasets` could not read the folder: "
            f"{first_line(exc)} Fix: check its README.md `configs:` section and split names "
            "(`?split=…`, `?config=…`).",
        ) from None
    return _text_column(ds, source.column, source, field_name, where=str(path))


def _load_hub(
    source: SourceSpec, work_dir: Path, progress: ProgressCallback, field_name: str
) -> datasets.Dataset:
    import datasets

    what = f"dataset {source.target!r}"
    try:
        loaded = datasets.load_dataset(
            source.target,
            name=source.config,
            split=source.split,
            streaming=source.streaming,
            revision=source.revision,
        )
    except Exception as exc:
        raise explain_hub_error(exc, source, what, field_name) from None
    if not source.streaming:
        ds = loaded.select(range(min(source.limit, len(loaded)))) if source.limit else loaded
        return _text_column(ds, source.column, source, field_name, where=source.target)
    iterable = loaded.take(source.limit) if source.limit else loaded
    column = source.column
    timer = StageTimer("load", progress, interval_s=1.0)
    label = source.to_string()

    def rows() -> Iterator[dict[str, str]]:
        count = size = 0
        for row in iterable:
            if column not in row:
                raise ConfigError(
                    field_name,
                    f"data source {label!r}: there is no column {column!r}; the "
                    f"columns are {', '.join(map(str, row))}. Fix: add `#COLUMN` with one of "
                    "them.",
                )
            text = row[column]
            if isinstance(text, str):
                count += 1
                size += len(text)
                timer.report(documents=count, bytes_done=size, message=f"streaming {label}")
                yield {"text": text}

    try:
        return datasets.Dataset.from_generator(
            rows,
            features=datasets.Features({"text": datasets.Value("string")}),
            cache_dir=str(work_dir / "stream"),
        )
    except ConfigError:
        raise
    except Exception as exc:
        cause = exc
        while cause.__cause__ is not None or cause.__context__ is not None:
            if isinstance(cause, ConfigError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise explain_hub_error(exc, source, what, field_name) from None


def _text_column(
    ds: datasets.Dataset, column: str, source: SourceSpec, field_name: str, *, where: str
) -> datasets.Dataset:
    import datasets

    if column not in ds.column_names:
        raise ConfigError(
            field_name,
            f"data source {source.to_string()!r}: {where} has no column {column!r}; "
            f"the columns are {', '.join(ds.column_names)}. Fix: name the text column with "
            f"`#COLUMN` (e.g. `{source.target}#{ds.column_names[0]}`).",
        )
    feature = ds.features[column]
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise ConfigError(
            field_name,
            f"data source {source.to_string()!r}: column {column!r} in {where} holds "
            f"{feature}, not text. Fix: name a text column with `#COLUMN` (the columns are "
            f"{', '.join(ds.column_names)}).",
        )
    ds = ds.select_columns([column])
    if column != "text":
        ds = ds.rename_column(column, "text")
    if feature.dtype != "string":
        ds = ds.cast_column("text", datasets.Value("string"))
    return ds


def _non_empty(ds: datasets.Dataset, work_dir: Path) -> datasets.Dataset:
    """Drop missing and blank documents (JSON rows without the column, empty lines)."""
    import pyarrow.compute as pc

    table = ds.with_format("arrow")
    keep: list[int] = []
    base = 0
    all_kept = True
    for batch in table.iter(batch_size=50_000):
        col = batch.column("text")
        ok = pc.and_(pc.is_valid(col), pc.invert(pc.match_substring_regex(pc.fill_null(col, ""), r"^\s*$")))
        mask = ok.to_numpy(zero_copy_only=False)
        if not mask.all():
            all_kept = False
        keep.extend((base + i) for i in mask.nonzero()[0].tolist())
        base += len(mask)
    return ds if all_kept else ds.select(keep)


def first_line(exc: BaseException) -> str:
    """An exception's first line, ending in a full stop: short enough to quote in an error."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if line.endswith(".") else line + "."


def _explain_load_error(
    exc: Exception, builder: str, files: list[Path], source: SourceSpec, field_name: str
) -> ConfigError:
    label = source.to_string()
    if builder == "json":
        for path in files:
            problem = find_bad_json(path)
            if problem:
                return ConfigError(
                    field_name,
                    f"data source {label!r}: {path} {problem} Fix: make every line "
                    'one JSON object (JSON Lines), e.g. {"text": "…"}, or delete the line.',
                )
    if isinstance(exc, UnicodeDecodeError):
        return ConfigError(
            field_name,
            f"data source {label!r}: invalid UTF-8 ({exc}). Fix: re-encode the file "
            "as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).",
        )
    return ConfigError(
        field_name,
        f"data source {label!r}: `datasets` could not read "
        f"{', '.join(str(f) for f in files[:3])} as {builder}: {first_line(_root(exc))} Fix: "
        "check the file's format matches its suffix.",
    )


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def find_bad_json(path: Path) -> str | None:
    """Describe the first thing in a ``.json``/``.jsonl`` file that is not JSON, with its line number."""
    with open_decompressed(path) as fh:
        data = fh.read().decode("utf-8", errors="replace")
    stripped = data.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and "\n" not in stripped.strip()):
        try:
            json.loads(data)
            return None
        except json.JSONDecodeError as exc:
            if stripped.startswith("["):
                return f"is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            snippet = line.strip()[:60]
            return f"line {number} is not JSON ({exc.msg} at column {exc.colno}): {snippet!r}."
        if not isinstance(value, dict):
            return f"line {number} is JSON but not an object (found {type(value).__name__})."
    return None


def explain_hub_error(
    exc: Exception, source: SourceSpec, what: str, field_name: str, local_example: str = LOCAL_EXAMPLE
) -> ConfigError:
    """Turn a ``datasets`` Hub failure into one paragraph: offline cache miss, unknown name, config, split.

    Fine-tuning data passes its own ``local_example`` so the offline fix names a chat file.
    """
    text = f"{type(exc).__name__}: {exc}"
    if offline_by_env() and any(
        s in text
        for s in (
            "offline",
            "Offline",
            "OFFLINE",
            "cache",
            "Couldn't reach",
            "ConnectionError",
            "LocalEntryNotFound",
        )
    ):
        return ConfigError(
            field_name,
            f"{what} is not in the local Hugging Face cache, and this machine is set "
            f"offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE). Fix: point --data at local files "
            f"instead (e.g. {local_example}), use `--data embedded` (built in, no network), or go "
            "online once to download it.",
        )
    if "DatasetNotFound" in text or "doesn't exist on the Hub" in text:
        return ConfigError(
            field_name,
            f"{what} was not found on the Hub (or it is private/gated). Fix: check "
            "the name at https://huggingface.co/datasets, or log in with `hf auth login` for a "
            "gated dataset.",
        )
    if "Config name is missing" in text or "BuilderConfig" in text:
        return ConfigError(
            field_name, f"{what}: {first_line(exc)} Fix: add the config as `hf:{source.target}:CONFIG`."
        )
    if "Unknown split" in text or "Bad split" in text:
        return ConfigError(
            field_name, f"{what}: {first_line(exc)} Fix: choose the split with `hf:{source.target}@SPLIT`."
        )
    return ConfigError(
        field_name,
        f"{what} could not be loaded: {first_line(exc)} Fix: check the name, "
        "config and split, or use local files.",
    )
