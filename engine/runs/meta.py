"""``run.json`` as a typed, versioned record: :class:`RunMeta`, and the run kinds, :class:`RunKind`.

Every field of run.json is declared once, here, with its type and meaning; the store reads and
writes the file only through :class:`RunMeta` (:meth:`engine.runs.store.RunDir.read_meta`,
:meth:`~engine.runs.store.RunDir.update_meta`), and :mod:`engine.runs.schema_doc` renders the
README's table from these declarations, so the documentation cannot drift. Torch-free.

Compatibility, so an old console can list a new engine's runs and the other way round:

- A missing field reads as its default (an older engine did not write it).
- A field this version does not know (a newer engine wrote it) is kept, untouched, in a private
  dict and written back as it was whenever run.json is rewritten.
- A ``kind`` this version does not know loads as the plain string; known kinds are
  :class:`RunKind` members, which are ``str`` too, so both compare and serialise as strings.
- :data:`RUN_SCHEMA_VERSION` changes only when a field changes meaning; adding a field does not.

Wrong types: a few are coerced because nothing can be misread by doing so (an integral float such
as ``3.0`` for an integer, an integer for a float, ``null`` for a field whose default is not
``null``, which reads as that default). Anything else is a :class:`RunStoreError` naming the field
and the file: a run.json that says ``"pid": "abc"`` was edited by hand or written by something
else, and guessing would make ``canvas stop`` signal the wrong process.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import numbers
import operator
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runs.errors import RunStoreError

#: Version of the run.json layout; bumped only when a field changes meaning (not when one is added).
RUN_SCHEMA_VERSION = 1


class RunKind(str, enum.Enum):
    """What a run does. ``str``-valued: ``RunKind.PRETRAIN == "pretrain"`` and JSON holds the plain
    string, so old readers and hand-written filters keep working."""

    PRETRAIN = "pretrain"
    FINETUNE = "finetune"
    EVAL = "eval"
    SERVE = "serve"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, kind: RunKind | str) -> RunKind:
        """The member for ``kind``; RunStoreError listing the kinds when it is none of them."""
        try:
            return cls(kind)
        except ValueError:
            raise RunStoreError(
                f"run kind {str(kind)!r} is not one of {', '.join(k.value for k in cls)}."
            ) from None


def _doc(text: str) -> dict[str, str]:
    """Field metadata holding its one-line meaning, which the README's schema table shows."""
    return {"doc": text}


@dataclass(frozen=True)
class RunMeta:
    """The contents of one ``run.json``. Frozen: change a run with
    :meth:`~engine.runs.store.RunDir.update_meta`, which rewrites the file under its lock."""

    schema: int = field(
        default=RUN_SCHEMA_VERSION, metadata=_doc("layout version; changes only when a field changes meaning")
    )
    id: str = field(
        default="", metadata=_doc("the run id, also the directory's name; sorts by creation time")
    )
    kind: RunKind | str = field(
        default="", metadata=_doc("what the run does (a newer engine's kind loads as written)")
    )
    name: str = field(
        default="", metadata=_doc("what people type (`canvas logs NAME`); default `<kind>-<end of id>`")
    )
    config: dict[str, Any] = field(
        default_factory=dict, metadata=_doc("the run's whole config as given at creation")
    )
    created: str | None = field(
        default=None, metadata=_doc("when the run directory was made (ISO 8601, UTC)")
    )
    host: str | None = field(
        default=None, metadata=_doc("host of the latest engine (before one starts: the creating host)")
    )
    status: str = field(
        default="unknown",
        metadata=_doc(
            "last state written: created, starting, running, finished, stopped, failed "
            "(`crashed`, `queued` and `unresponsive` are concluded by readers, never written)"
        ),
    )
    message: str = field(
        default="", metadata=_doc("why it is in that state (a failure's error, a stop's reason)")
    )
    pid: int | None = field(default=None, metadata=_doc("the engine's process id (rank 0 under torchrun)"))
    pid_start_time: float | None = field(
        default=None, metadata=_doc("that process's start, unix seconds: a reused pid does not match")
    )
    pid_start_ticks: int | None = field(
        default=None, metadata=_doc("its start in clock ticks since boot (Linux), for an exact match")
    )
    boot_id: str | None = field(default=None, metadata=_doc("the boot that pid belongs to (Linux)"))
    started: str | None = field(
        default=None, metadata=_doc("when the latest engine took the run over (ISO 8601)")
    )
    ended: str | None = field(
        default=None, metadata=_doc("when the latest attempt ended (ISO 8601); null while one is live")
    )
    launched: str | None = field(
        default=None, metadata=_doc("when the latest engine was launched (ISO 8601)")
    )
    attempts: int = field(default=0, metadata=_doc("engines launched for this run: 1 + resumes"))
    argv: list[str] | None = field(default=None, metadata=_doc("the command line of the latest launch"))
    resume_argv: list[str] | None = field(
        default=None, metadata=_doc("what `canvas resume` runs; `{run_dir}` is the run directory")
    )
    resumed: str | None = field(default=None, metadata=_doc("when it was last resumed (ISO 8601)"))
    resumed_from: str | None = field(default=None, metadata=_doc("the status it was last resumed from"))
    total_steps: int | None = field(
        default=None, metadata=_doc("planned optimiser steps, for step/total (from `run_info`)")
    )
    nproc: int | None = field(
        default=None, metadata=_doc("pre-training: processes it was launched with (DDP)")
    )
    traceback: str | None = field(
        default=None, metadata=_doc("a failure's traceback (its last 8000 characters)")
    )
    base: str | None = field(default=None, metadata=_doc("fine-tunes: the base model, as shown to people"))
    base_source: str | None = field(
        default=None, metadata=_doc("fine-tunes: what `from_pretrained` loaded; export reuses it")
    )
    adapter: str | None = field(
        default=None, metadata=_doc("fine-tunes: the final adapter's folder, relative to the run directory")
    )
    adapter_bytes: int | None = field(default=None, metadata=_doc("fine-tunes: that adapter's size in bytes"))
    adapter_from: str | None = field(
        default=None, metadata=_doc("fine-tunes: the checkpoint the adapter was copied from")
    )
    url: str | None = field(
        default=None,
        metadata=_doc("serve runs: the address clients use (`http://HOST:PORT/v1`), once it listens"),
    )
    evals: list[str] = field(
        default_factory=list,
        metadata=_doc("pre-training and fine-tune runs: the ids of the eval runs that scored this run"),
    )
    slurm_job_id: str | None = field(
        default=None, metadata=_doc("SLURM runs: the job id `sbatch` gave (`canvas train --slurm`)")
    )
    _extras: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    # -- reading and writing ----------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any, path: Path | str | None = None) -> RunMeta:
        """The record for a parsed run.json; see the module docstring for what is tolerated.

        ``path`` only names the file in error messages.
        """
        where = str(path) if path is not None else "run.json"
        if not isinstance(data, dict):
            raise RunStoreError(f"{where} does not hold a JSON object but {_json_kind(data)}.")
        hints = _hints()
        values: dict[str, Any] = {}
        for name in field_names():
            if name not in data:
                continue
            try:
                values[name] = _coerce(data[name], hints[name], _default(name))
            except _WrongType:
                raise RunStoreError(
                    f"{where}: field {name!r} is {_json_kind(data[name])} ({data[name]!r:.60}), but must be "
                    f"{type_name(hints[name])}. The file was edited or written by something else; fix "
                    f"the field or remove it (a missing field reads as its default)."
                ) from None
        meta = cls(**values)
        object.__setattr__(meta, "_extras", {k: v for k, v in data.items() if k not in hints})
        return meta

    def to_json(self) -> dict[str, Any]:
        """The JSON object to write: every field in declaration order, then the unknown fields
        read from a newer engine's file, unchanged."""
        out: dict[str, Any] = {}
        for name in field_names():
            value = getattr(self, name)
            if isinstance(value, RunKind):
                value = value.value
            elif isinstance(value, (dict, list)):
                value = _copy(value)
            out[name] = value
        for name, value in self._extras.items():
            out.setdefault(name, value)
        return out

    def with_changes(self, **changes: Any) -> RunMeta:
        """A copy with ``changes`` applied (unknown fields kept).

        ValueError names a field this version does not know (a typo fails in the tests, not in a
        user's run directory) or a value of the wrong type.
        """
        hints = _hints()
        names = field_names()
        for name, value in changes.items():
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"run.json has no field {name!r}{hint}; its fields are declared in "
                    f"engine/runs/meta.py (RunMeta): add it there first."
                )
            try:
                changes[name] = _coerce(value, hints[name], _default(name))
            except _WrongType:
                raise ValueError(
                    f"run.json field {name!r} must be {type_name(hints[name])}, not "
                    f"{type(value).__name__} ({value!r:.60})"
                ) from None
        new = dataclasses.replace(self, **changes)
        object.__setattr__(new, "_extras", dict(self._extras))
        return new

    @property
    def known_kind(self) -> RunKind | None:
        """The kind as a :class:`RunKind`, or None for a kind this version does not know."""
        return self.kind if isinstance(self.kind, RunKind) else None

    @property
    def extras(self) -> dict[str, Any]:
        """A copy of the fields this version does not know (written by a newer engine)."""
        return _copy(self._extras)


# -- field introspection (also used by schema_doc) ------------------------------------------------


def field_names() -> tuple[str, ...]:
    """The public fields of run.json, in the order they are written."""
    return tuple(f.name for f in dataclasses.fields(RunMeta) if not f.name.startswith("_"))


def field_doc(name: str) -> str:
    """The one-line meaning of a field."""
    return next(f.metadata.get("doc", "") for f in dataclasses.fields(RunMeta) if f.name == name)


_HINTS: dict[str, Any] = {}


def _hints() -> dict[str, Any]:
    if not _HINTS:
        hints = typing.get_type_hints(RunMeta)
        _HINTS.update({name: hints[name] for name in field_names()})
    return _HINTS


def field_type(name: str) -> Any:
    """The declared type of a field (a typing object)."""
    return _hints()[name]


def _default(name: str) -> Any:
    """A field's default (a fresh one for ``config``); what ``null`` in a non-nullable field reads as."""
    if not _DEFAULTS:
        _DEFAULTS.update({f.name: f for f in dataclasses.fields(RunMeta)})
    f = _DEFAULTS[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


_DEFAULTS: dict[str, dataclasses.Field] = {}


def type_name(tp: Any, *, null: bool = True) -> str:
    """A declared type as JSON people read it: ``integer or null``, ``list of strings``…;
    ``null=False`` leaves out "or null" (for tables that say once that a field may be null)."""
    args = typing.get_args(tp)
    if _is_union(tp) and not null:
        args = tuple(a for a in args if a is not type(None))
        if len(args) == 1:
            return type_name(args[0])
    if _is_union(tp):
        kinds = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if kinds and str in args:  # a known kind, or a newer version's kind kept as written
            return f"string ({type_name(kinds[0])})" + (" or null" if type(None) in args else "")
        return " or ".join(type_name(arg) for arg in args)
    origin = typing.get_origin(tp)
    if origin is list:
        return f"list of {type_name(args[0])}s" if args else "list"
    if origin is dict or tp is dict:
        return "object"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return ", ".join(str(m.value) for m in tp)
    return {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


# -- coercion -------------------------------------------------------------------------------------


class _WrongType(Exception):
    pass


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(value: Any, tp: Any, default: Any) -> Any:
    """``value`` as type ``tp``, or _WrongType. ``null`` for a non-nullable field reads as its
    default."""
    if value is None:
        if _is_union(tp) and type(None) in typing.get_args(tp):
            return None
        if default is not None:
            return default
        raise _WrongType
    if _is_union(tp):
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, None)
            except _WrongType:
                continue
        raise _WrongType
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise _WrongType from None
    if isinstance(value, bool) and tp is not bool:
        raise _WrongType  # JSON true is not the number 1
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return operator.index(value)  # int, numpy integers
        except TypeError:
            raise _WrongType from None
    if tp is float:
        if isinstance(value, numbers.Real):
            return float(value)
        raise _WrongType
    if tp is str:
        if isinstance(value, str):
            return value
        raise _WrongType
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _WrongType
        return [_coerce(v, item, None) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _WrongType
        return value
    raise _WrongType


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts and lists), so a reader's edit never reaches the record."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
