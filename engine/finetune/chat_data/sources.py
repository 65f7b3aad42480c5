"""Reading chat data: the cheap checks of a spec's files, then every row, wherever it lives.

Rows come from local JSON Lines / JSON / Parquet files, a Hub-style dataset folder, or the Hugging
Face Hub, each as ``(where, row)`` so that every later error can name the line or row. Reading is
lazy, so ``limit=`` stops early. ``datasets`` is imported only for folders and the Hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.errors import ConfigError
from engine.data import sources as data_sources
from engine.data import spec as data_spec
from engine.finetune.chat_data.conversation import Located
from engine.finetune.chat_data.formats import OASST_FIELDS
from engine.finetune.chat_data.spec import ChatDataSpec

if TYPE_CHECKING:  # pragma: no cover
    import datasets

#: The local alternative offline errors suggest.
LOCAL_EXAMPLE = '`--data ./chats.jsonl`, one {"messages": [{"role", "content"}, …]} object a line'
#: File types read as rows (by :func:`engine.data.spec.file_format`'s builder name).
_ROW_BUILDERS = ("json", "parquet")


def check_chat_spec(spec: ChatDataSpec, *, field_name: str = "data") -> None:
    """Cheap checks before anything heavy: local paths exist and are readable; the Hub is reachable.

    Offline with ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, the Hub is not checked: the cache is
    used, and a cache miss becomes a clear :class:`ConfigError` when loading.
    """
    checked_files(spec, field_name)


def checked_files(spec: ChatDataSpec, field_name: str) -> list[Path]:
    """The files a local spec names (checked readable as rows); none for the Hub or embedded data."""
    if spec.kind == "hf":
        data_sources.ensure_hub_reachable(f"dataset {spec.target!r}", field_name, LOCAL_EXAMPLE)
        return []
    if spec.kind != "local":
        return []
    target = Path(spec.target).expanduser()
    source = data_spec.SourceSpec(kind="local", target=spec.target)
    files = data_spec.local_files(source, field_name=field_name)
    if target.is_dir() and not data_spec.is_dataset_folder(target):
        files = [f for f in files if data_spec.file_format(f)[0] in _ROW_BUILDERS]
        if not files:
            raise ConfigError(
                field_name,
                f"chat data {spec.target!r}: the folder holds no .jsonl, .json or .parquet files. "
                "Fix: put the conversations in such files, or name a file directly.",
            )
    for path in files:
        builder = "dataset" if path.is_dir() else data_spec.file_format(path)[0]
        if builder not in (*_ROW_BUILDERS, "dataset"):
            raise ConfigError(
                field_name,
                f"chat data {spec.target!r}: cannot read {path.name!r} as conversations: chat data "
                "must be .jsonl, .json or .parquet (optionally .gz/.zst), or a Hub-style dataset "
                "folder. Fix: convert it, e.g. one JSON object per line with a `messages` list.",
            )
    return files


def read_rows(spec: ChatDataSpec, files: list[Path], field_name: str) -> Iterator[Located]:
    """Every row as ``(where, row)``; lazy, so ``limit`` stops reading early."""
    if spec.kind == "hf":
        yield from _hub_rows(spec, field_name)
        return
    target = Path(spec.target).expanduser()
    for path in files:
        shown = str(path.relative_to(target)) if target.is_dir() and path != target else path.name
        if path.is_dir():
            yield from _folder_rows(path, spec, field_name)
        elif data_spec.file_format(path)[0] == "parquet":
            yield from _parquet_rows(path, shown)
        else:
            yield from _json_rows(path, shown, spec, field_name)


def _json_rows(path: Path, shown: str, spec: ChatDataSpec, field_name: str) -> Iterator[Located]:
    """JSON Lines (``line N``), a JSON array (``item N``) or a single JSON object."""
    from engine.data.check import CHAT_ACCEPT_HINT, refuse_bad_bytes, scan_bytes

    label = f"chat data {spec.to_string()!r}"
    refuse_bad_bytes(path, scan_bytes(path), spec.errors, label, field_name, CHAT_ACCEPT_HINT)
    with data_sources.open_decompressed(path) as fh:
        text = fh.read().decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise _bad_json(path, spec, field_name) from None
        for number, item in enumerate(items, start=1):
            yield f"item {number} of {shown}", _object(item, f"item {number} of {shown}", field_name)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            whole = _whole_object(text) if number == 1 else None
            if whole is None:
                raise _bad_json(path, spec, field_name) from None
            yield shown, whole
            return
        yield f"line {number} of {shown}", _object(row, f"line {number} of {shown}", field_name)


def _whole_object(text: str) -> dict | None:
    """A pretty-printed single JSON object (a ``.json`` file holding one conversation)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _bad_json(path: Path, spec: ChatDataSpec, field_name: str) -> ConfigError:
    problem = data_sources.find_bad_json(path) or "is not valid JSON."
    return ConfigError(
        field_name,
        f"chat data {spec.to_string()!r}: {path.name} {problem} Fix: make every line one JSON "
        'object (JSON Lines), e.g. {"messages": [{"role": "user", "content": "…"}, …]}, or delete '
        "the line.",
    )


def _object(value: Any, where: str, field_name: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(
            field_name,
            f"{where} is a JSON {type(value).__name__}, not an object. Fix: make each row an object "
            'such as {"messages": […]}.',
        )
    return value


def _parquet_rows(path: Path, shown: str) -> Iterator[Located]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield f"row {number} of {shown}", row


def _folder_rows(path: Path, spec: ChatDataSpec, field_name: str) -> Iterator[Located]:
    """A Hub-style folder (``data/``, a ``README.md`` with configs) or ``save_to_disk`` output."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if data_spec.is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            ds = loaded[spec.split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            ds = datasets.load_dataset(
                str(path), name=spec.config, split=spec.split, cache_dir=data_sources.local_cache_dir()
            )
    except Exception as exc:
        raise ConfigError(
            field_name,
            f"chat data {spec.to_string()!r}: `datasets` could not read the folder (split "
            f"{spec.split!r}): {data_sources.first_line(exc)} Fix: check its README.md `configs:` "
            "section and split names (`?split=…`).",
        ) from None
    yield from _dataset_rows(ds, f"{path.name} ({spec.split})", spec)


def _hub_rows(spec: ChatDataSpec, field_name: str) -> Iterator[Located]:
    import datasets

    datasets.disable_progress_bars()
    source = data_spec.SourceSpec(kind="hf", target=spec.target, config=spec.config, split=spec.split)
    try:
        ds = datasets.load_dataset(spec.target, name=spec.config, split=spec.split)
    except Exception as exc:
        raise data_sources.explain_hub_error(
            exc, source, f"dataset {spec.target!r}", field_name, LOCAL_EXAMPLE
        ) from None
    yield from _dataset_rows(ds, f"{spec.target} ({spec.split})", spec)


def _dataset_rows(ds: datasets.Dataset, shown: str, spec: ChatDataSpec) -> Iterator[Located]:
    if spec.format == "oasst":
        # oasst1 carries toxicity scores, emoji counts and labels per message: read only what is used.
        wanted = {*OASST_FIELDS, spec.column or "text", "lang", "rank", "deleted", "review_result"}
        ds = ds.select_columns([c for c in ds.column_names if c in wanted])
    number = 0
    for batch in ds.iter(batch_size=1024):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns), strict=True):
            number += 1
            yield f"row {number} of {shown}", dict(zip(columns, values, strict=True))
