"""Data source specs: one small language for the CLI, config files and the console.

Torch-free and ``datasets``-free, so the console can parse and check a spec while the user types.
Loading lives in :mod:`engine.data.sources`; this module only says *what* to load. The pieces of
the syntax it shares with the fine-tuning chat spec (the ``?key=value`` tail, ``hf:`` names,
weights, numbers) are read by :mod:`engine.data.grammar`.

String form (``canvas data prepare --data SPEC``, ``data = "SPEC"`` in TOML)::

    SPEC    := SOURCE ("," SOURCE)*
    SOURCE  := [WEIGHT "*"] TARGET ["#" COLUMN] ["?" KEY=VALUE ("&" KEY=VALUE)*]
    TARGET  := "embedded"                        the offline corpus that ships with Python
             | PRESET                            openwebtext, c4, owt+c4 (the README's mix)
             | "hf:" NAME [":" CONFIG] ["@" SPLIT]   a Hugging Face Hub dataset
             | PATH                              a file, folder or glob on this machine

Options: ``errors=replace`` (accept a file with NUL bytes or more than 2% invalid UTF-8, bad
bytes replaced by U+FFFD; by default such a file is refused, see :mod:`engine.data.check`),
``limit=N`` (take the first N documents), ``streaming=1`` (Hub: stream instead of
downloading everything), ``column=NAME`` (same as ``#NAME``), ``split=``, ``config=``,
``revision=`` (Hub), ``sample_by=document|paragraph|line`` (``.txt``: what one document is;
default ``document``, a whole file, as nanoGPT treats ``input.txt``), ``weight=W`` (same as
``W*``).

Mixing: without weights every source contributes all its documents (after ``limit``), so counts
mix by ``limit``. With weights on every source, the largest mix with exactly those document
proportions is taken without repeating any document (``0.7*a.jsonl,0.3*b.txt``).

Examples: ``embedded`` · ``owt+c4`` · ``hf:allenai/c4:en@validation#text?limit=1000&streaming=1``
· ``notes/*.md,0.25*books.jsonl.zst#body`` · ``./corpus/?sample_by=paragraph``.

Paths containing ``,``, ``#``, ``?`` or ``*`` before a weight cannot be written in the string
form; use the structured form, which maps onto the same dataclasses::

    [[data.sources]]
    hf = "allenai/c4"          # or path = "…", or preset = "embedded"
    config = "en"
    limit = 250000
    streaming = true
"""

from __future__ import annotations

import glob
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError
from engine.data import grammar

#: What ``canvas train`` and the demo use when no data is named: needs no network.
DEFAULT_SPEC = "embedded"

#: Text-like formats ``datasets`` reads, by file suffix (after any compression suffix).
FORMATS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
}
#: Compression suffixes ``datasets`` decompresses on the fly (not for Parquet, which compresses inside).
COMPRESSIONS = (".gz", ".zst", ".bz2", ".xz")

SAMPLE_BY = ("document", "paragraph", "line")
_OPTION_KEYS = (
    "limit",
    "streaming",
    "column",
    "split",
    "config",
    "revision",
    "sample_by",
    "weight",
    "errors",
)


@dataclass(frozen=True)
class SourceSpec:
    """One source of documents. ``kind`` is ``embedded``, ``hf`` (Hub) or ``local``."""

    kind: str
    target: str = "embedded"
    config: str | None = None
    split: str = "train"
    column: str = "text"
    limit: int | None = None
    streaming: bool = False
    revision: str | None = None
    sample_by: str = "document"
    weight: float | None = None
    preset: str | None = None
    errors: str = "check"  # "replace": accept a file with NUL or many invalid bytes (engine.data.check)

    def to_string(self) -> str:
        """The canonical string form; ``parse_spec(s.to_string())`` gives ``s`` back."""
        if self.kind == "embedded":
            body = "embedded"
        elif self.kind == "hf":
            body = f"hf:{self.target}" + (f":{self.config}" if self.config else "")
            body += f"@{self.split}" if self.split != "train" else ""
        else:
            body = self.target
        if self.kind != "embedded" and self.column != "text":
            body += f"#{self.column}"
        opts = []
        if self.limit is not None:
            opts.append(f"limit={self.limit}")
        if self.streaming:
            opts.append("streaming=1")
        if self.revision:
            opts.append(f"revision={self.revision}")
        if self.kind == "local" and self.split != "train":
            opts.append(f"split={self.split}")
        if self.kind == "local" and self.config:
            opts.append(f"config={self.config}")
        if self.sample_by != "document":
            opts.append(f"sample_by={self.sample_by}")
        if self.errors != "check":
            opts.append(f"errors={self.errors}")
        if opts:
            body += "?" + "&".join(opts)
        return f"{_fmt_weight(self.weight)}*{body}" if self.weight is not None else body

    def to_dict(self) -> dict[str, Any]:
        """The structured (TOML/JSON) form, leaving out defaults."""
        key = {"embedded": "preset", "hf": "hf", "local": "path"}[self.kind]
        out: dict[str, Any] = {key: self.target}
        defaults = SourceSpec(kind=self.kind)
        for name, value in asdict(self).items():
            if name in ("kind", "target", "preset") or value == getattr(defaults, name):
                continue
            out[name] = value
        return out


@dataclass(frozen=True)
class DataSpec:
    """An ordered mix of sources; the unit that is prepared and cached."""

    sources: tuple[SourceSpec, ...] = field(default_factory=lambda: (SourceSpec(kind="embedded"),))

    def to_string(self) -> str:
        return ",".join(s.to_string() for s in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {"sources": [s.to_dict() for s in self.sources]}

    @property
    def weighted(self) -> bool:
        return any(s.weight is not None for s in self.sources)


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    spec: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "embedded",
            "~2.3 MB of English shipped with CPython (language reference topics and "
            "standard-library docstrings, PSF licence). No network, no download.",
            "embedded",
        ),
        Preset(
            "openwebtext",
            "OpenWebText (Skylion007/openwebtext), ~8M web documents, streamed.",
            "hf:Skylion007/openwebtext#text?streaming=1",
        ),
        Preset(
            "c4",
            "C4 English (allenai/c4, config en), ~365M documents, streamed.",
            "hf:allenai/c4:en#text?streaming=1",
        ),
        Preset(
            "owt+c4",
            "The original README's mix: 250K OpenWebText + 250K C4 documents (500K).",
            "hf:Skylion007/openwebtext#text?limit=250000&streaming=1,"
            "hf:allenai/c4:en#text?limit=250000&streaming=1",
        ),
    )
}
_ALIASES = {"owt": "openwebtext", "c4-en": "c4", "readme": "owt+c4"}


def _fmt_weight(weight: float) -> str:
    return f"{weight:g}"


def parse_spec(text: str | None, *, field_name: str = "data") -> DataSpec:
    """Parse the string form. Empty or None means :data:`DEFAULT_SPEC`. A JSON object with
    ``sources`` is the structured form (how a config holds TOML's ``[[data.sources]]`` tables)."""
    if text is None or not text.strip():
        text = DEFAULT_SPEC
    if text.lstrip().startswith('{"sources"'):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return spec_from_obj(obj, field_name=field_name)
    sources: list[SourceSpec] = []
    for raw in text.split(","):
        if not raw.strip():
            raise ConfigError(
                field_name,
                f"data spec {text!r} has an empty source between commas. Fix: "
                "remove the extra comma, e.g. `embedded,notes.txt`.",
            )
        sources.extend(_parse_source(raw.strip(), field_name))
    return _checked(DataSpec(tuple(sources)), field_name)


def _parse_source(raw: str, field_name: str) -> list[SourceSpec]:
    weight: float | None = None
    weight_text, body = grammar.split_weight(raw)
    if weight_text is not None:
        weight = grammar.positive_float(weight_text, raw, field_name)
    options: dict[str, str] = {}
    head, tail = grammar.split_options(body)
    if tail is not None and grammar.is_option_list(tail):
        body = head
        options = grammar.parse_options(tail)
    body, column = grammar.split_column(body)
    if column is not None:
        options.setdefault("column", column)
    if weight is not None:
        options.setdefault("weight", str(weight))
    return _build(body, options, raw, field_name)


def _build(body: str, options: Mapping[str, Any], raw: str, field_name: str) -> list[SourceSpec]:
    unknown = sorted(set(options) - set(_OPTION_KEYS))
    if unknown:
        raise ConfigError(
            field_name,
            f"data source {raw!r} has unknown option(s) {', '.join(unknown)}. "
            f"Fix: use only {', '.join(_OPTION_KEYS)}.",
        )
    fields: dict[str, Any] = {}
    for key, value in options.items():
        if key == "limit":
            fields[key] = None if value in (None, "") else grammar.positive_int(value, raw, field_name)
        elif key == "weight":
            fields[key] = None if value in (None, "") else grammar.positive_float(value, raw, field_name)
        elif key == "streaming":
            fields[key] = grammar.boolean(value, raw, field_name)
        elif key == "sample_by":
            if value not in SAMPLE_BY:
                raise ConfigError(
                    field_name,
                    f"data source {raw!r}: sample_by={value!r} is not one of "
                    f"{', '.join(SAMPLE_BY)}. Fix: `?sample_by=paragraph` for example.",
                )
            fields[key] = value
        elif key == "errors":
            from engine.data.check import check_errors_option

            fields[key] = check_errors_option(str(value), raw, field_name)
        elif value in (None, ""):
            raise ConfigError(
                field_name,
                f"data source {raw!r}: option {key} is empty. Fix: give it a "
                f"value (`{key}=…`) or leave it out.",
            )
        else:
            fields[key] = str(value)
    name = body.strip()
    lower = name.lower()
    preset_name = _ALIASES.get(lower, lower)
    if preset_name == "embedded":
        return [
            SourceSpec(
                kind="embedded", preset="embedded", **_only(fields, ("limit", "weight"), raw, field_name)
            )
        ]
    if preset_name in PRESETS:
        expanded = [
            s for part in PRESETS[preset_name].spec.split(",") for s in _parse_source(part, field_name)
        ]
        if "weight" in fields and len(expanded) > 1:
            raise ConfigError(
                field_name,
                f"data source {raw!r}: preset {preset_name} is already a mix of "
                f"{len(expanded)} sources and cannot take one weight. Fix: write its sources "
                f"out with a weight each (`canvas data sources` shows them).",
            )
        return [replace(s, preset=preset_name, **fields) for s in expanded]
    if grammar.is_hub_target(name):
        hub = grammar.parse_hub_target(name, raw, field_name)
        spec_fields = {"config": hub.config, "split": hub.split, **fields}
        return [SourceSpec(kind="hf", target=hub.name, **spec_fields)]
    if not name:
        raise ConfigError(
            field_name,
            f"data source {raw!r} names nothing to load. Fix: give a path, "
            "`embedded`, a preset or `hf:NAME`.",
        )
    return [SourceSpec(kind="local", target=name, **fields)]


def _only(fields: dict[str, Any], allowed: Sequence[str], raw: str, field_name: str) -> dict[str, Any]:
    extra = sorted(set(fields) - set(allowed))
    if extra:
        raise ConfigError(
            field_name,
            f"data source {raw!r}: the embedded corpus takes only "
            f"{' and '.join(allowed)}, not {', '.join(extra)}. Fix: remove them.",
        )
    return fields


def spec_from_obj(obj: Any, *, field_name: str = "data") -> DataSpec:
    """Build a spec from the structured form: a string, a list of strings/tables, or ``{sources: …}``.

    A table names exactly one of ``preset``, ``hf`` or ``path`` and may carry the same options as
    the string form (``config``, ``split``, ``column``, ``limit``, ``streaming``, ``revision``,
    ``sample_by``, ``weight``).
    """
    if obj is None or isinstance(obj, str):
        return parse_spec(obj, field_name=field_name)
    if isinstance(obj, DataSpec):
        return obj
    if isinstance(obj, Mapping) and "sources" in obj:
        extra = sorted(set(obj) - {"sources"})
        if extra:
            raise ConfigError(
                field_name,
                f"data table has unknown key(s) {', '.join(extra)}. Fix: put sources "
                "under `sources = [...]` only.",
            )
        obj = obj["sources"]
    if isinstance(obj, Mapping):
        obj = [obj]
    if not isinstance(obj, Sequence) or not obj:
        raise ConfigError(
            field_name,
            f"data must be a spec string or a non-empty list of sources, got "
            f'{obj!r}. Fix: `data = "embedded"` or `[[data.sources]]` tables.',
        )
    sources: list[SourceSpec] = []
    for i, item in enumerate(obj):
        where = f"{field_name}.sources[{i}]"
        if isinstance(item, str):
            sources.extend(parse_spec(item, field_name=where).sources)
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(where, f"{where} must be a string or a table, got {item!r}.")
        kinds = [k for k in ("preset", "hf", "path") if k in item]
        if len(kinds) != 1:
            raise ConfigError(
                where,
                f"{where} must name exactly one of preset, hf or path (found "
                f'{", ".join(kinds) or "none"}). Fix: e.g. `path = "corpus.jsonl"`.',
            )
        key = kinds[0]
        options = {k: v for k, v in item.items() if k != key}
        raw = json.dumps(dict(item), default=str)
        body = str(item[key]) if key != "hf" else f"hf:{item[key]}"
        if key == "path":
            sources.extend(_build_local(str(item[key]), options, raw, where))
        else:
            sources.extend(_build(body, options, raw, where))
    return _checked(DataSpec(tuple(sources)), field_name)


def _build_local(path: str, options: Mapping[str, Any], raw: str, field_name: str) -> list[SourceSpec]:
    # A structured path is taken literally: never a preset, whatever its name.
    built = _build("./__path__", options, raw, field_name)
    return [replace(built[0], target=path)]


def _checked(spec: DataSpec, field_name: str) -> DataSpec:
    weighted = [s.weight is not None for s in spec.sources]
    if any(weighted) and not all(weighted):
        raise ConfigError(
            field_name,
            f"data spec {spec.to_string()!r} weights some sources but not others. "
            "Fix: weight every source (`0.7*a.txt,0.3*b.txt`) or none (then each source "
            "gives all its documents, capped by `?limit=N`).",
        )
    for s in spec.sources:
        if s.weight is not None and s.streaming and s.limit is None:
            raise ConfigError(
                field_name,
                f"data source {s.to_string()!r} streams without a limit, so its "
                "size is unknown and a weight cannot be applied. Fix: add `&limit=N`.",
            )
    return spec


# --- local paths: cheap checks the console can run while typing ---------------------------------


def file_format(path: Path) -> tuple[str | None, str | None]:
    """``(builder, compression)`` for a file name, e.g. ``("json", ".zst")``; builder None if unknown."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in COMPRESSIONS else None
    if compression:
        suffixes = suffixes[:-1]
    builder = FORMATS.get(suffixes[-1]) if suffixes else None
    if builder == "parquet" and compression:
        return None, compression
    return builder, compression


def is_dataset_folder(path: Path) -> bool:
    """A folder laid out like a Hub dataset (``README.md`` configs, ``data/``) or ``save_to_disk`` output."""
    if not path.is_dir():
        return False
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return True
    if (path / "data").is_dir():
        return True
    readme = path / "README.md"
    if readme.is_file():
        head = readme.read_text(encoding="utf-8", errors="replace")[:20000]
        return head.startswith("---") and ("configs:" in head or "dataset_info:" in head)
    return False


def is_saved_dataset(path: Path) -> bool:
    """Output of ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (read with ``load_from_disk``)."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def local_files(source: SourceSpec, *, field_name: str = "data") -> list[Path]:
    """The files a local source names, sorted; raises :class:`ConfigError` on anything unusable.

    A dataset folder is returned as itself (one entry); ``datasets`` reads its layout.
    """
    raw = source.target
    path = Path(raw).expanduser()
    if any(ch in raw for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file()]
        if not files:
            raise ConfigError(
                field_name,
                f"data source {raw!r}: the pattern matches no files (looked from "
                f"{Path.cwd()}). Fix: check the pattern, or quote it so the shell does not "
                "expand it.",
            )
    elif path.is_dir():
        if is_dataset_folder(path):
            return [path]
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and file_format(p)[0]
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise ConfigError(
                field_name,
                f"data source {raw!r}: the folder holds no readable data files. "
                f"Fix: put {', '.join(sorted(FORMATS))} files (optionally "
                f"{', '.join(COMPRESSIONS)}) in it, or name the files directly.",
            )
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(
            field_name,
            f"data source {raw!r}: no such file or folder (looked from "
            f"{Path.cwd()}). Fix: check the path, or use `embedded` to train on the built-in "
            "corpus.",
        )
    for f in files:
        builder, _compression = file_format(f)
        if builder is None:
            raise ConfigError(
                field_name,
                f"data source {raw!r}: cannot read {f.name!r}: its type is not "
                f"one of {', '.join(sorted(FORMATS))} (optionally compressed "
                f"{', '.join(COMPRESSIONS)}; Parquet is never wrapped in compression). Fix: "
                "convert it, or rename a plain-text file to .txt.",
            )
        if f.stat().st_size == 0:
            raise ConfigError(
                field_name,
                f"data source {raw!r}: {str(f)!r} is empty (0 bytes). Fix: remove "
                "it from the spec or fill it.",
            )
    return files


def validate_spec(spec: DataSpec, *, check_paths: bool = True, field_name: str = "data") -> DataSpec:
    """Cheap checks (no ``datasets``, no network): every local path exists, is readable and non-empty."""
    if check_paths:
        for source in spec.sources:
            if source.kind == "local":
                local_files(source, field_name=field_name)
    return spec
