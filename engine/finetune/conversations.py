"""Conversational data for fine-tuning: what to load, how each row format becomes a conversation.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant", "content": str}``:
at most one system message, first; then user and assistant turns alternating, starting with the
user and ending with the assistant's reply (the part the model learns to write).

Torch-free and ``datasets``-free at import, so the console can parse and check a spec while the
user types; ``datasets`` is imported only to read Hub datasets and Hub-style folders.

String form (``--data SPEC``), in the spirit of :mod:`engine.data.spec`::

    SPEC    := TARGET ["?" KEY=VALUE ("&" KEY=VALUE)*]
    TARGET  := "embedded"                 conversations about Python, built offline (PSF licence)
             | "guanaco" | "oasst1"       the QLoRA paper's data / OpenAssistant's message trees
             | "hf:" NAME [":" CONFIG] ["@" SPLIT]    any Hugging Face Hub dataset
             | PATH                       .jsonl, .json or .parquet, a folder of them, or a
                                          Hub-style dataset folder

Options: ``format=`` one of :data:`FORMATS` (detected from the first row when absent),
``limit=N`` (the first N conversations), ``split=`` (default ``train``), ``lang=`` (``oasst``
only: the language of the first message, default ``en``; ``all`` keeps every language) and
``column=`` (the field that holds the messages or the text, when it is not the usual one).

Row formats, one conversation per row unless said otherwise:

* ``messages``: ``{"messages": [{"role": …, "content": …}, …]}``, optional top-level ``system``;
* ``sharegpt``: ``{"conversations": [{"from": "human" | "gpt" | "system", "value": …}, …]}``;
* ``guanaco``: ``{"text": "### Human: …### Assistant: …"}``, as in the QLoRA paper;
* ``oasst``: one row per *message* of OpenAssistant's trees; each tree gives one thread, the
  best-ranked reply at every level;
* ``alpaca``: ``{"instruction": …, "input": …, "output": …}``.

A local file in a Hub format goes through the same converter as the Hub dataset, which is how the
Hub formats are tested offline. Every problem is a :class:`ConfigError` of one paragraph that
names the file and line (or row), the field, what was found and the fix; nothing is merged or
guessed silently. Message text is stripped of surrounding whitespace (chat templates add their own
separators).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.errors import ConfigError
from engine.data import sources as data_sources
from engine.data import spec as data_spec

if TYPE_CHECKING:  # pragma: no cover
    import datasets

#: The local alternative offline errors suggest.
LOCAL_EXAMPLE = '`--data ./chats.jsonl`, one {"messages": [{"role", "content"}, …]} object a line'
Message = dict[str, str]
Conversation = list[Message]
#: Where a row or conversation came from, as a phrase: "line 7 of chats.jsonl".
Located = tuple[str, Any]

ROLES = ("system", "user", "assistant")
FORMATS = ("messages", "sharegpt", "guanaco", "oasst", "alpaca")
OPTION_KEYS = ("format", "column", "split", "lang", "limit")
#: File types read as rows (by :func:`engine.data.spec.file_format`'s builder name).
_ROW_BUILDERS = ("json", "parquet")
#: The field each format reads when ``column=`` is not given.
_DEFAULT_COLUMN = {"messages": "messages", "sharegpt": "conversations", "guanaco": "text", "oasst": "text"}
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
_OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
_OASST_FIELDS = ("message_id", "parent_id", "role")
_GUANACO_TURN = re.compile(r"### (Human|Assistant):")


# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatPreset:
    """A named data set: what it expands to, and the one line shown in logs and model cards."""

    name: str
    spec: str
    summary: str
    licence: str


PRESETS: dict[str, ChatPreset] = {
    p.name: p
    for p in (
        ChatPreset(
            "embedded",
            "embedded",
            "a few thousand conversations about Python built offline from CPython's own documentation "
            "(standard-library docstrings and pydoc_data.topics); no network",
            "PSF-2.0",
        ),
        ChatPreset(
            "guanaco",
            "hf:timdettmers/openassistant-guanaco?format=guanaco",
            "timdettmers/openassistant-guanaco on the Hugging Face Hub: the highest-rated threads of "
            "OpenAssistant's oasst1 as '### Human: … ### Assistant: …' text, the QLoRA paper's "
            "fine-tuning set (~9.8K train / ~0.5K test)",
            "Apache-2.0",
        ),
        ChatPreset(
            "oasst1",
            "hf:OpenAssistant/oasst1?format=oasst",
            "OpenAssistant/oasst1 on the Hugging Face Hub: human-written message trees in 35 languages, "
            "one thread per tree following the best-ranked replies",
            "Apache-2.0",
        ),
    )
}


@dataclass(frozen=True)
class ChatDataSpec:
    """A parsed chat data spec. ``kind`` is ``embedded``, ``hf`` (Hub) or ``local``.

    ``format`` None means "detect it from the first row"; ``column`` None means the format's usual field.
    """

    kind: str
    target: str = "embedded"
    config: str | None = None
    split: str = "train"
    format: str | None = None
    column: str | None = None
    lang: str = "en"
    limit: int | None = None
    preset: str | None = None

    def to_string(self) -> str:
        """The canonical string form; ``parse_chat_spec(s.to_string())`` gives ``s`` back."""
        if self.preset:
            body, base = self.preset, _expand_preset(self.preset)
        elif self.kind == "embedded":
            body, base = "embedded", ChatDataSpec(kind="embedded")
        elif self.kind == "hf":
            body = f"hf:{self.target}" + (f":{self.config}" if self.config else "")
            body += f"@{self.split}" if self.split != "train" else ""
            base = ChatDataSpec(kind="hf", target=self.target, config=self.config, split=self.split)
        else:
            body, base = self.target, ChatDataSpec(kind="local", target=self.target)
        options = [
            f"{key}={value}"
            for key in OPTION_KEYS
            if (value := getattr(self, key)) is not None and value != getattr(base, key)
        ]
        return body + ("?" + "&".join(options) if options else "")


def parse_chat_spec(text: str, *, field_name: str = "data") -> ChatDataSpec:
    """Parse the string form (see the module docstring); raises :class:`ConfigError` naming the problem."""
    raw = (text or "").strip()
    if not raw:
        raise ConfigError(
            field_name,
            "the chat data spec is empty. Fix: name the conversations to fine-tune on, e.g. "
            "`embedded` (offline), `guanaco`, `oasst1` or a file such as `./chats.jsonl`.",
        )
    body, options = _split_options(raw, field_name)
    values = _option_values(options, raw, field_name)
    lower = body.strip().lower()
    if lower == "embedded":
        extra = sorted(set(values) - {"limit"})
        if extra:
            raise ConfigError(
                field_name,
                f"chat data {raw!r}: the embedded conversations take only the limit option, not "
                f"{', '.join(extra)}. Fix: remove them, e.g. `embedded?limit=500`.",
            )
        return ChatDataSpec(kind="embedded", preset="embedded", **values)
    if lower in PRESETS:
        base = _expand_preset(lower)
        if "format" in values and values["format"] != base.format:
            raise ConfigError(
                field_name,
                f"chat data {raw!r}: the preset {lower} is always in the {base.format} format, not "
                f"{values['format']}. Fix: remove `format={values['format']}`, or name the dataset "
                f"itself (`hf:{base.target}?format=…`).",
            )
        spec = replace(base, **values)
    elif lower.startswith("hf:"):
        # The pre-training parser knows the Hub name grammar and its errors: reuse it.
        hub = data_spec._build(body.strip(), {}, raw, field_name)[0]
        spec = replace(
            ChatDataSpec(kind="hf", target=hub.target, config=hub.config, split=hub.split), **values
        )
    else:
        spec = replace(ChatDataSpec(kind="local", target=body.strip()), **values)
    return _consistent(spec, values, raw, field_name)


def _expand_preset(name: str) -> ChatDataSpec:
    """What a preset stands for, with ``preset`` set so that ``to_string`` writes the short name."""
    if name == "embedded":
        return ChatDataSpec(kind="embedded", preset="embedded")
    return replace(parse_chat_spec(PRESETS[name].spec), preset=name)


def _split_options(raw: str, field_name: str) -> tuple[str, dict[str, str]]:
    head, sep, tail = raw.rpartition("?")
    if not (sep and "=" in tail):
        return raw, {}
    if not data_spec._OPTIONS_RE.match(tail):
        raise ConfigError(
            field_name,
            f"chat data {raw!r}: the options after '?' ({tail!r}) are not KEY=VALUE pairs joined "
            "by '&'. Fix: e.g. `chats.jsonl?format=sharegpt&limit=1000`.",
        )
    options: dict[str, str] = {}
    for pair in tail.split("&"):
        key, _, value = pair.partition("=")
        options[key] = value
    return head, options


def _option_values(options: Mapping[str, str], raw: str, field_name: str) -> dict[str, Any]:
    """Typed option values; unknown keys, empty values and bad numbers are errors that name them."""
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ConfigError(
            field_name,
            f"chat data {raw!r} has unknown option(s) {', '.join(unknown)}. "
            f"Fix: use only {', '.join(OPTION_KEYS)} (e.g. `?format=sharegpt&limit=1000`).",
        )
    values: dict[str, Any] = {}
    for key, value in options.items():
        value = value.strip()
        if not value:
            raise ConfigError(
                field_name,
                f"chat data {raw!r}: option {key} is empty. Fix: give it a value (`{key}=…`) "
                "or leave it out.",
            )
        if key == "limit":
            values[key] = data_spec._positive_int(value, raw, field_name)
        elif key == "format":
            if value.lower() not in FORMATS:
                raise ConfigError(
                    field_name,
                    f"chat data {raw!r}: format={value!r} is not one of {', '.join(FORMATS)}. "
                    "Fix: e.g. `?format=sharegpt`, or leave it out to detect the format from the rows.",
                )
            values[key] = value.lower()
        elif key == "lang":
            values[key] = value.lower()
        else:
            values[key] = value
    return values


def _consistent(spec: ChatDataSpec, given: Mapping[str, Any], raw: str, field_name: str) -> ChatDataSpec:
    """Options that cannot apply to the chosen format are errors, not silently ignored."""
    if "lang" in given and spec.format not in (None, "oasst"):
        raise ConfigError(
            field_name,
            f"chat data {raw!r}: lang= applies only to the oasst format (it filters message trees by "
            f"language), not to {spec.format}. Fix: remove `lang={given['lang']}`.",
        )
    if spec.column is not None and spec.format == "alpaca":
        raise ConfigError(
            field_name,
            f"chat data {raw!r}: column= does not apply to the alpaca format, which always reads "
            "instruction, input and output. Fix: remove `column=…` or rename the fields.",
        )
    return spec


def check_chat_spec(spec: ChatDataSpec, *, field_name: str = "data") -> None:
    """Cheap checks before anything heavy: local paths exist and are readable; the Hub is reachable.

    Offline with ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, the Hub is not checked: the cache is
    used, and a cache miss becomes a clear :class:`ConfigError` when loading.
    """
    _checked_files(spec, field_name)


def _checked_files(spec: ChatDataSpec, field_name: str) -> list[Path]:
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


# --- loading -------------------------------------------------------------------------------------


def load_conversations(spec: ChatDataSpec | str, *, field_name: str = "data") -> list[Conversation]:
    """Load, convert and validate every conversation, in the source's order.

    The first problem found stops the load with a :class:`ConfigError` that names the row; a data
    set is never trained on half-checked.
    """
    if isinstance(spec, str):
        spec = parse_chat_spec(spec, field_name=field_name)
    files = _checked_files(spec, field_name)
    fmt = None
    if spec.kind == "embedded":
        from engine.finetune.embedded_chat import embedded_conversations

        pairs: Iterable[Located] = (
            (f"embedded conversation {i}", conv) for i, conv in enumerate(embedded_conversations(), 1)
        )
    else:
        rows = _rows(spec, files, field_name)
        first = next(rows, None)
        if first is None:
            raise _no_conversations(spec, None, field_name)
        fmt, column = _resolve_format(spec, first, field_name)
        pairs = _converted(itertools.chain([first], rows), fmt, column, spec.lang, field_name)
    out: list[Conversation] = []
    for where, conv in pairs:
        if spec.limit is not None and len(out) >= spec.limit:
            break
        out.append(validate_conversation(conv, where, field_name=field_name))
    if not out:
        raise _no_conversations(spec, fmt, field_name)
    return out


def _no_conversations(spec: ChatDataSpec, fmt: str | None, field_name: str) -> ConfigError:
    label = spec.to_string()
    if fmt == "oasst":
        why = (
            f"no message tree in language {spec.lang!r} has an assistant reply that survives the "
            "filters (deleted messages and failed reviews are skipped). Fix: check ?lang= (e.g. "
            "`lang=all` keeps every language) or the file's contents."
        )
    else:
        why = "the source holds no rows. Fix: check the file or split is the one you meant."
    return ConfigError(field_name, f"chat data {label!r} gave no conversations: {why}")


def _rows(spec: ChatDataSpec, files: list[Path], field_name: str) -> Iterator[Located]:
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
            f"{spec.split!r}): {data_sources._first_line(exc)} Fix: check its README.md `configs:` "
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
        raise data_sources._explain_hub_error(
            exc, source, f"dataset {spec.target!r}", field_name, LOCAL_EXAMPLE
        ) from None
    yield from _dataset_rows(ds, f"{spec.target} ({spec.split})", spec)


def _dataset_rows(ds: datasets.Dataset, shown: str, spec: ChatDataSpec) -> Iterator[Located]:
    if spec.format == "oasst":
        # oasst1 carries toxicity scores, emoji counts and labels per message: read only what is used.
        wanted = {*_OASST_FIELDS, spec.column or "text", "lang", "rank", "deleted", "review_result"}
        ds = ds.select_columns([c for c in ds.column_names if c in wanted])
    number = 0
    for batch in ds.iter(batch_size=1024):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns), strict=True):
            number += 1
            yield f"row {number} of {shown}", dict(zip(columns, values, strict=True))


# --- formats -------------------------------------------------------------------------------------


def _converted(
    rows: Iterable[Located], fmt: str, column: str, lang: str, field_name: str
) -> Iterator[Located]:
    """Rows to ``(where, conversation)``: one per row, or one per message tree for ``oasst``."""
    if fmt == "oasst":
        yield from _oasst_threads(rows, column, lang, field_name)
        return
    convert = _ROW_CONVERTERS[fmt]
    for where, row in rows:
        yield where, convert(row, column, where, field_name)


def _resolve_format(spec: ChatDataSpec, first: Located, field_name: str) -> tuple[str, str]:
    """The spec's format, or the one the first row's fields fit (an error lists them otherwise)."""
    if spec.format is not None:
        return spec.format, spec.column or _DEFAULT_COLUMN.get(spec.format, "")
    detected = detect_format(first[1], spec.column)
    if detected is None:
        where, row = first
        column = f" (column {spec.column!r})" if spec.column else ""
        raise ConfigError(
            field_name,
            f"{where}{column} does not look like any chat format: it has {_fields(row)}. Expected "
            "`messages` (a list of role/content), `conversations` (a list of from/value, ShareGPT), "
            "`text` with '### Human:'/'### Assistant:' (Guanaco), message_id/parent_id/role/text "
            "(OpenAssistant) or instruction/output (Alpaca). Fix: rename the fields, or pass "
            f"?format= one of {', '.join(FORMATS)} (and ?column=NAME for the field holding the "
            "messages or text).",
        )
    return detected


def detect_format(row: Mapping[str, Any], column: str | None = None) -> tuple[str, str] | None:
    """``(format, column)`` that fits a row's fields, or None when nothing does."""
    candidates = [column] if column else ["messages", "conversations"]
    for key in candidates:
        value = row.get(key)
        if isinstance(value, list) and value and isinstance(value[0], Mapping):
            if "role" in value[0] and "content" in value[0]:
                return "messages", key
            if "from" in value[0] and "value" in value[0]:
                return "sharegpt", key
    text_key = column or "text"
    if all(k in row for k in _OASST_FIELDS) and text_key in row:
        return "oasst", text_key
    if isinstance(row.get(text_key), str) and "### Human:" in row[text_key]:
        return "guanaco", text_key
    if not column and "instruction" in row and "output" in row:
        return "alpaca", ""
    return None


def _fields(row: Mapping[str, Any]) -> str:
    return ", ".join(repr(k) for k in row) if row else "no fields at all"


def _field(row: Mapping[str, Any], name: str, where: str, fmt: str, field_name: str) -> Any:
    """``row[name]``, or the error that lists the fields the row does have."""
    if name in row and row[name] is not None:
        return row[name]
    others = [f for f in FORMATS if f != fmt]
    raise ConfigError(
        field_name,
        f"{where} has no {name!r} field; it has {_fields(row)}. Fix: give every row a {name!r} "
        f"field ({fmt} format), or name the field holding it with ?column=NAME, or pass the "
        f"format that fits (?format= one of {', '.join(others)}).",
    )


def _message_list(row: Mapping[str, Any], column: str, where: str, fmt: str, field_name: str) -> list:
    value = _field(row, column, where, fmt, field_name)
    if not isinstance(value, list):
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} holds a {type(value).__name__}, not a list of messages. "
            f"Fix: make it a list of messages, or pass the right ?format= (this was read as {fmt}).",
        )
    return value


def _from_messages(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    conv: Conversation = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        conv.append({"role": "system", "content": system})
    for number, item in enumerate(_message_list(row, column, where, "messages", field_name), start=1):
        if not isinstance(item, Mapping) or "role" not in item or "content" not in item:
            found = _fields(item) if isinstance(item, Mapping) else f"a {type(item).__name__}"
            raise ConfigError(
                field_name,
                f"message {number} in {column!r} of {where} needs 'role' and 'content'; it has "
                f'{found}. Fix: write each message as {{"role": "user", "content": "…"}}, or '
                "pass ?format=sharegpt for from/value messages.",
            )
        if item["role"] == "system" and conv and number == 1:
            raise ConfigError(
                field_name,
                f"{where} has both a top-level 'system' field and a system message first in "
                f"{column!r}. Fix: keep only one of them.",
            )
        conv.append({"role": item["role"], "content": item["content"]})
    return conv


def _from_sharegpt(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    conv: Conversation = []
    for number, item in enumerate(_message_list(row, column, where, "sharegpt", field_name), start=1):
        if not isinstance(item, Mapping) or "from" not in item or "value" not in item:
            found = _fields(item) if isinstance(item, Mapping) else f"a {type(item).__name__}"
            raise ConfigError(
                field_name,
                f"message {number} in {column!r} of {where} needs 'from' and 'value' (ShareGPT); it "
                f'has {found}. Fix: write each message as {{"from": "human", "value": "…"}}, or '
                "pass ?format=messages for role/content messages.",
            )
        speaker = item["from"]
        role = _SHAREGPT_ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
        if role is None:
            raise ConfigError(
                field_name,
                f"message {number} in {column!r} of {where} is from {speaker!r}; ShareGPT speakers "
                f"must be one of {', '.join(_SHAREGPT_ROLES)}. Fix: rename the speaker.",
            )
        conv.append({"role": role, "content": item["value"]})
    return conv


def _from_guanaco(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    text = _field(row, column, where, "guanaco", field_name)
    if not isinstance(text, str):
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} holds a {type(text).__name__}, not text. Fix: make it a "
            "string '### Human: …### Assistant: …'.",
        )
    parts = _GUANACO_TURN.split(text)
    if len(parts) == 1:
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} has no '### Human:' or '### Assistant:' markers: "
            f"{text.strip()[:60]!r}. Fix: write turns as '### Human: …### Assistant: …', or pass "
            "the right ?format=.",
        )
    if parts[0].strip():
        raise ConfigError(
            field_name,
            f"field {column!r} of {where} has text before the first turn marker: "
            f"{parts[0].strip()[:60]!r}. Fix: start the text with '### Human:'.",
        )
    return [
        {"role": "user" if speaker == "Human" else "assistant", "content": content}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _from_alpaca(row: Mapping[str, Any], column: str, where: str, field_name: str) -> Conversation:
    instruction = _field(row, "instruction", where, "alpaca", field_name)
    output = _field(row, "output", where, "alpaca", field_name)
    extra = row.get("input")
    prompt = instruction
    if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
        prompt = f"{instruction.strip()}\n\n{extra.strip()}"
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


_ROW_CONVERTERS = {
    "messages": _from_messages,
    "sharegpt": _from_sharegpt,
    "guanaco": _from_guanaco,
    "alpaca": _from_alpaca,
}


# --- OpenAssistant message trees -----------------------------------------------------------------


def _oasst_threads(rows: Iterable[Located], column: str, lang: str, field_name: str) -> Iterator[Located]:
    """One thread per tree: from the root prompt, the best-ranked surviving reply at every level.

    Best-ranked is rank 0 (the lowest rank; unranked replies last), ties broken by message_id.
    Deleted messages and those that failed review are skipped with their subtrees. A thread
    that ends on a prompter message loses it; a tree without any assistant reply gives nothing.
    Trees are kept when their root's ``lang`` matches (``all`` keeps every language; a row
    without a language is kept).
    """
    roots: list[Located] = []
    children: dict[Any, list[Mapping[str, Any]]] = {}
    for where, row in rows:
        for name in (*_OASST_FIELDS, column):
            if name not in row:
                _field(row, name, where, "oasst", field_name)
        if row["role"] not in _OASST_ROLES:
            raise ConfigError(
                field_name,
                f"{where} has role {row['role']!r}; OpenAssistant roles are prompter and assistant. "
                "Fix: correct the role, or pass the right ?format=.",
            )
        if not _oasst_usable(row):
            continue
        if row["parent_id"] is None:
            roots.append((where, row))
        else:
            children.setdefault(row["parent_id"], []).append(row)
    for where, root in roots:
        root_lang = root.get("lang")
        if lang != "all" and root_lang is not None and str(root_lang).lower() != lang:
            continue
        thread = [root]
        while replies := children.get(thread[-1]["message_id"]):
            thread.append(min(replies, key=_oasst_rank))
        if thread[-1]["role"] == "prompter":
            thread.pop()
        if len(thread) < 2:
            continue
        conv = [{"role": _OASST_ROLES[m["role"]], "content": m[column]} for m in thread]
        yield f"{where} (message tree {root['message_id']})", conv


def _oasst_usable(row: Mapping[str, Any]) -> bool:
    return row.get("deleted") is not True and row.get("review_result") is not False


def _oasst_rank(row: Mapping[str, Any]) -> tuple[bool, float, str]:
    rank = row.get("rank")
    return (rank is None, rank if rank is not None else 0.0, str(row["message_id"]))


# --- validation ----------------------------------------------------------------------------------


def validate_conversation(conv: Any, where: str, *, field_name: str = "data") -> Conversation:
    """Check one conversation and return it clean (role and stripped content only).

    Rules: roles are system/user/assistant; content is non-empty text; a system message only
    first; then user and assistant alternate, starting with the user and ending with the
    assistant. Two turns in a row from the same speaker are an error, never merged: joining them
    would put words in someone's mouth.
    """
    if not isinstance(conv, list) or not conv:
        raise ConfigError(
            field_name, f"the conversation at {where} has no messages. Fix: add the turns or drop the row."
        )
    out: Conversation = []
    for number, message in enumerate(conv, start=1):
        label = f"message {number} of the conversation at {where}"
        if not isinstance(message, Mapping):
            raise ConfigError(
                field_name,
                f"{label} is a {type(message).__name__}, not a message. Fix: write it as "
                '{"role": "user", "content": "…"}.',
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ConfigError(
                field_name,
                f"{label} has role {role!r}; the allowed roles are {', '.join(ROLES)}. Fix: rename "
                "the role (e.g. human → user, gpt/bot → assistant), or pass the right ?format=.",
            )
        if not isinstance(content, str):
            raise ConfigError(
                field_name,
                f"{label} ({role}) has content of type {type(content).__name__} ({str(content)[:60]}), "
                "not text. Fix: make 'content' a string (multimodal parts are not supported).",
            )
        if not content.strip():
            raise ConfigError(
                field_name,
                f"{label} ({role}) has empty content. Fix: fill it in, or drop the conversation.",
            )
        out.append({"role": role, "content": content.strip()})
    _check_turn_order(out, where, field_name)
    return out


def _check_turn_order(conv: Conversation, where: str, field_name: str) -> None:
    for number, message in enumerate(conv[1:], start=2):
        if message["role"] == "system":
            raise ConfigError(
                field_name,
                f"message {number} of the conversation at {where} is a system message; a system "
                "message is allowed only first. Fix: move it to the start, or make it a user turn.",
            )
    turns = conv[1:] if conv[0]["role"] == "system" else conv
    for number, (a, b) in enumerate(itertools.pairwise(turns), start=len(conv) - len(turns) + 1):
        if a["role"] == b["role"]:
            raise ConfigError(
                field_name,
                f"messages {number} and {number + 1} of the conversation at {where} are both "
                f"{a['role']} turns; user and assistant must alternate (merging them would change "
                "what was said). Fix: join them into one message yourself, or remove one.",
            )
    if not any(m["role"] == "assistant" for m in turns):
        raise ConfigError(
            field_name,
            f"the conversation at {where} has no assistant turn, so there is nothing to learn "
            "from. Fix: add the assistant's reply, or drop the row.",
        )
    if turns[0]["role"] != "user":
        raise ConfigError(
            field_name,
            f"the conversation at {where} starts with an assistant turn: the first turn (after "
            "an optional system message) must be the user's. Fix: add the user message it answers.",
        )
    if turns[-1]["role"] == "user":
        raise ConfigError(
            field_name,
            f"the conversation at {where} ends with a user turn: the last message must be the "
            "assistant's reply. Fix: add the reply, or remove the trailing user message.",
        )


# --- splitting and describing --------------------------------------------------------------------


def split_conversations(
    convs: Sequence[Conversation], val_fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """``(train, validation)``: a seeded shuffle picks ``ceil(val_fraction * n)`` held-out conversations.

    At least one is held out when ``val_fraction > 0`` and there are two or more, and at least one
    is always left to train on. Both parts keep the source's order, so the same inputs give the
    same split on every machine (``random.Random(seed)``, not the global generator).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(
            "val_fraction",
            f"val_fraction={val_fraction!r} must be at least 0 and below 1. Fix: e.g. 0.05 to hold "
            "out 5% of the conversations, or 0 for none.",
        )
    n = len(convs)
    held = 0
    if val_fraction > 0 and n >= 2:
        held = min(max(1, math.ceil(val_fraction * n)), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_ids = set(order[:held])
    train = [c for i, c in enumerate(convs) if i not in val_ids]
    val = [c for i, c in enumerate(convs) if i in val_ids]
    return train, val


def describe_source(spec: ChatDataSpec | str) -> str:
    """One line for logs and model cards: what the data is, and where it and its licence come from."""
    if isinstance(spec, str):
        spec = parse_chat_spec(spec)
    limit = f" (first {spec.limit:,} conversations)" if spec.limit else ""
    if spec.preset in PRESETS or spec.kind == "embedded":
        preset = PRESETS[spec.preset or "embedded"]
        split = f", split {spec.split}" if spec.kind == "hf" and spec.split != "train" else ""
        lang = f", language {spec.lang}" if spec.format == "oasst" else ""
        return f"{preset.name}: {preset.summary}{split}{lang}; licence {preset.licence}{limit}."
    fmt = spec.format or "format detected from the rows"
    if spec.kind == "hf":
        config = f", config {spec.config}" if spec.config else ""
        return (
            f"hf:{spec.target} ({fmt}{config}, split {spec.split}) from the Hugging Face Hub; "
            f"licence: see https://huggingface.co/datasets/{spec.target}{limit}."
        )
    return f"local conversations from {spec.target} ({fmt}); licence: as its owner states{limit}."


__all__ = [
    "FORMATS",
    "PRESETS",
    "ROLES",
    "ChatDataSpec",
    "ChatPreset",
    "Conversation",
    "check_chat_spec",
    "describe_source",
    "detect_format",
    "load_conversations",
    "parse_chat_spec",
    "split_conversations",
    "validate_conversation",
]
