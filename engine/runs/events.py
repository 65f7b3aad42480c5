"""The event schema of ``events.jsonl``: the one place both halves agree on what a run says.

The engine appends one JSON object a line; the console tails the file. Every line carries the
envelope ``{"v": SCHEMA_VERSION, "t": <unix seconds>, "type": "<kind>", ...fields}``; the fields of
each known type are the dataclasses below, each with its units. Torch-free and dependency-free.

Compatibility rules, so an old console can read a new engine's runs and the other way round:

- Readers ignore fields they do not know (dropped when decoding) and a missing field reads as its
  default (None for a required one). A value of the wrong kind (a string where a number belongs)
  reads as None, and the writer's spelling of non-finite floats (``"nan"``, ``"inf"``) decodes
  back to a float, so a typed attribute holds what its annotation says, or None.
- Types a reader does not know are *surfaced, not dropped*: :func:`decode_any` (and
  :meth:`engine.runs.reader.EventReader.read_events`) turn them into an :class:`UnknownEvent`
  carrying the raw record, which readers skip (the dashboard, ``canvas logs``) or print whole
  (``canvas logs --raw``). :func:`decode` returns None for them instead. A line that is not a
  JSON object with a string ``type`` at all is not an event: the reader counts it
  (:attr:`engine.runs.reader.EventReader.skipped`) so a front end can say so once.
- Adding a type or an optional field does not change :data:`SCHEMA_VERSION`. Renaming or changing
  the meaning or unit of a field does, and readers then branch on ``v``. A line whose ``v`` is
  newer than this reader's schema is never decoded as the type of that name (its fields may mean
  something else): it arrives as an :class:`UnknownEvent` with ``newer`` set, which front ends
  show as "written by a newer Neural Canvas".
- The writer (:class:`engine.runs.session.EventWriter`) is strict about *known* types: an unknown
  field name or a missing required one raises at the first emit, so a typo in the engine fails in
  its tests instead of silently vanishing from the console.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: Version of the field meanings below; written into every line as ``v``.
SCHEMA_VERSION = 1

#: Values of ``status.state`` (and of ``status`` in run.json) that the engine itself writes.
#: ``crashed`` is never written: it is what a reader concludes when the process is gone without
#: one of the final states (see :mod:`engine.runs.status`).
STATES = ("created", "starting", "running", "finished", "stopped", "failed")
FINAL_STATES = ("finished", "stopped", "failed")


@dataclass
class Event:
    """Base of all event types: ``t`` is the wall-clock time (unix seconds) the engine wrote it.

    Readers use attributes (``event.loss``) and ``isinstance`` on the classes below; there is
    deliberately no dict-style access, so a reader still written against raw records fails loudly.
    """

    TYPE: ClassVar[str] = ""
    t: float | None = field(default=None, kw_only=True)

    @property
    def type(self) -> str:
        """The ``type`` string of this event (of the line, for an :class:`UnknownEvent`)."""
        return self.TYPE


@dataclass
class Status(Event):
    """The run changed state (``running``, ``finished``, ``stopped``, ``failed``); ``message`` says
    why, e.g. the exception text of a failure or "stop requested (SIGTERM)"."""

    TYPE: ClassVar[str] = "status"
    state: str
    message: str = ""


@dataclass
class Metric(Event):
    """One optimisation step's numbers (written every N steps, not necessarily every step).

    ``step`` counts optimiser steps from 0 across resumes; ``tokens`` is the cumulative count of
    training tokens seen; ``step_time`` is seconds per step; ``peak_mem`` is bytes of accelerator
    (or process) memory at peak; ``epoch`` may be fractional.
    """

    TYPE: ClassVar[str] = "metric"
    step: int
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    step_time: float | None = None
    tokens: int | None = None
    epoch: float | None = None
    peak_mem: int | None = None
    mfu: float | None = None  # model FLOPs utilisation (0..1), on GPUs with a known peak
    skipped: int | None = None  # steps skipped so far for a non-finite loss or gradient


@dataclass
class Eval(Event):
    """A held-out evaluation at ``step``: mean loss, its perplexity (``exp(val_loss)``), and any
    further named scores (ROUGE, BLEU, …) in ``metrics``."""

    TYPE: ClassVar[str] = "eval"
    step: int
    val_loss: float | None = None
    perplexity: float | None = None
    metrics: dict[str, float] | None = None


@dataclass
class Checkpoint(Event):
    """A checkpoint is complete on disk (renamed into place) at ``path``, relative to the run
    directory or absolute. ``kind`` is ``last`` (for resuming), ``best`` (lowest ``val_loss`` so
    far) or ``step`` (a kept snapshot)."""

    TYPE: ClassVar[str] = "checkpoint"
    step: int
    path: str
    kind: str = "last"
    val_loss: float | None = None


@dataclass
class Log(Event):
    """A human-readable line worth showing in the console's log pane (``level``: debug, info,
    warning, error). Free-form stdout still goes to ``engine.log``."""

    TYPE: ClassVar[str] = "log"
    message: str
    level: str = "info"


@dataclass
class Gpu(Event):
    """One GPU sample (NVML). ``util`` in percent, memory in bytes, ``temp`` in °C, ``power`` and
    ``power_limit`` in watts, ``sm_clock`` in MHz, ``proc_mem`` bytes used by this run's process.

    ``index`` is NVML's index (as ``nvidia-smi`` numbers the GPUs, not renumbered by
    ``CUDA_VISIBLE_DEVICES``); ``name`` the model; ``fan`` in percent; ``pstate`` the performance
    state (0 = P0, fastest). A field NVML cannot read on this GPU is None. When there is no GPU to
    sample the engine writes one event with ``index = -1`` and ``reason`` saying why ("no NVIDIA
    driver: …", "no GPU visible: …"), and no further ``gpu`` events. ``unavailable: true`` with a
    real index says the same (older samplers wrote it so).
    """

    TYPE: ClassVar[str] = "gpu"
    index: int
    util: float | None = None
    mem_used: int | None = None
    mem_total: int | None = None
    temp: float | None = None
    power: float | None = None
    power_limit: float | None = None
    sm_clock: float | None = None
    proc_mem: int | None = None
    name: str | None = None
    fan: float | None = None
    pstate: int | None = None
    reason: str | None = None
    unavailable: bool | None = None


@dataclass
class System(Event):
    """One host sample (psutil): ``cpu_pct`` in percent of all cores, ``ram_*``, ``rss`` (this
    process's resident memory) and ``disk_free`` (of the run directory's file system) in bytes.

    ``ram_used`` is total minus available (what ``free`` calls used, caches excluded);
    ``proc_cpu_pct`` is this process's CPU use in percent of one core (above 100 with several
    threads); ``cuda_peak`` is the CUDA caching allocator's peak bytes for this process (None
    without CUDA).
    """

    TYPE: ClassVar[str] = "system"
    cpu_pct: float | None = None
    ram_used: int | None = None
    ram_total: int | None = None
    rss: int | None = None
    disk_free: int | None = None
    proc_cpu_pct: float | None = None
    cuda_peak: int | None = None


@dataclass
class Carbon(Event):
    """Running totals since the run started (CodeCarbon): energy in kWh, emissions in kg CO2eq,
    and ``trees``: tree-months needed to absorb them, a figure people can picture.

    Totals include earlier attempts of a resumed run. ``power`` is the last measured draw of
    CPU + GPU + RAM in watts; ``country`` the ISO 3166 alpha-3 code whose grid intensity is used.
    """

    TYPE: ClassVar[str] = "carbon"
    energy_kwh: float | None = None
    emissions_kg: float | None = None
    trees: float | None = None
    power: float | None = None
    country: str | None = None


@dataclass
class Progress(Event):
    """Progress of a phase without optimiser steps (data preparation, tokenizer training,
    evaluation): ``done`` of ``total`` ``unit`` (``total`` None when unknown), ``rate`` in units
    per second, ``eta`` in seconds."""

    TYPE: ClassVar[str] = "progress"
    phase: str
    done: float = 0
    total: float | None = None
    unit: str = ""
    rate: float | None = None
    eta: float | None = None


@dataclass
class RunInfo(Event):
    """What is running, written once at start (and again on resume): a config summary, the
    parameter count, the precision (``bf16``, ``fp32``, ``nf4``…), the device, and the planned
    number of steps, which the console shows as ``step/total``."""

    TYPE: ClassVar[str] = "run_info"
    config: dict[str, Any] | None = None
    params: int | None = None
    precision: str | None = None
    device: str | None = None
    total_steps: int | None = None
    precision_reason: str | None = None  # why this precision (hardware detection or request)
    tokens_per_step: int | None = None
    compiled: bool | None = None
    resumed_from: int | None = None  # the step a resumed run continues from
    # fine-tunes only
    trainable_params: int | None = None  # the LoRA adapters' parameters (params: the whole model)
    base: str | None = None  # the base model, as shown to people
    quantization: str | None = None  # e.g. "4bit nf4 double-quant", "8bit", "none"
    lora_targets: str | None = None  # comma list of wrapped modules
    chat_template: str | None = None  # which template formats the conversations


@dataclass
class Request(Event):
    """One HTTP request a ``serve`` run answered: ``endpoint`` (``/v1/chat/completions``…), the
    HTTP ``status`` it got (499: the client went away before the end), whether it ``stream``-ed,
    the ``prompt_tokens`` and ``completion_tokens`` of its usage, ``duration_s`` from receiving it
    to the last byte, ``tokens_per_s`` (completion tokens over the generation time),
    ``time_to_first_token_s``, the ``finish_reason`` (``stop``, ``length``, ``cancelled``) and,
    for a refused request, the ``error`` message it was sent."""

    TYPE: ClassVar[str] = "request"
    endpoint: str
    status: int
    method: str | None = None
    model: str | None = None
    stream: bool | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_s: float | None = None
    tokens_per_s: float | None = None
    time_to_first_token_s: float | None = None
    finish_reason: str | None = None
    error: str | None = None


@dataclass
class Sample(Event):
    """Text the model wrote during training (``sample_every``): at ``step``, its continuation
    ``text`` of ``prompt`` (the ``index``-th prompt of the run's set), ``new_tokens`` long, decoded
    with ``temperature`` (0: greedy) and ``seed``. Both strings are the model's and the user's
    own: untrusted, shown as plain text."""

    TYPE: ClassVar[str] = "sample"
    step: int
    prompt: str
    text: str
    index: int | None = None
    new_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None


@dataclass
class UnknownEvent(Event):
    """A line of a type this reader does not know (a newer engine's, or another tool's), with the
    whole ``record`` as read. Readers that show events skip it; ``canvas logs --raw`` prints it."""

    record: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return str(self.record.get("type"))

    @property
    def newer(self) -> bool:
        """Written under a newer schema (``v`` above :data:`SCHEMA_VERSION`) by a newer engine."""
        return is_newer(self.record)


#: Every known type by its ``type`` string.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        Status,
        Metric,
        Eval,
        Checkpoint,
        Log,
        Gpu,
        System,
        Carbon,
        Progress,
        RunInfo,
        Request,
        Sample,
    )
}

#: Types that can arrive many times a second for hours; :func:`engine.runs.reader.downsample`
#: thins these for a first paint and keeps every other event.
HIGH_RATE_TYPES = ("metric", "gpu", "system", "carbon", "progress")

_ENVELOPE = ("v", "t", "type")


def field_names(event_type: str) -> tuple[str, ...]:
    """The payload fields of a known type (without the envelope), in declaration order."""
    cls = EVENT_TYPES[event_type]
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "t")


def required_fields(event_type: str) -> tuple[str, ...]:
    """The fields a writer must give for a known type."""
    cls = EVENT_TYPES[event_type]
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


def defaults(event_type: str) -> dict[str, Any]:
    """The non-None defaults of a known type (``kind="last"``, ``level="info"``…), which the
    writer fills in so every line is complete on its own ({} for unknown types)."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        return {}
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.name != "t" and f.default is not dataclasses.MISSING and f.default is not None
    }


def validate(event_type: str, fields: dict[str, Any]) -> None:
    """Raise ValueError when ``fields`` do not fit a known type; unknown types pass untouched."""
    if event_type not in EVENT_TYPES:
        return
    known = set(field_names(event_type))
    unknown = sorted(set(fields) - known - set(_ENVELOPE))
    if unknown:
        raise ValueError(
            f"event {event_type!r} has no field(s) {', '.join(unknown)}; its fields are "
            f"{', '.join(sorted(known))} (see engine/runs/events.py)"
        )
    missing = [name for name in required_fields(event_type) if name not in fields]
    if missing:
        raise ValueError(f"event {event_type!r} needs field(s) {', '.join(missing)}")


def to_record(event: Event) -> dict[str, Any]:
    """The payload of a typed event as a dict with its ``type`` (envelope ``v``/``t`` added by the
    writer). An :class:`UnknownEvent` gives back the record it was read from."""
    if isinstance(event, UnknownEvent):
        return dict(event.record)
    record = {"type": event.TYPE, **dataclasses.asdict(event)}
    if record.get("t") is None:
        record.pop("t", None)
    return record


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def _kind(annotation: str) -> str:
    """The kind of value a field holds, from its annotation (a string: postponed annotations)."""
    for kind in ("dict", "bool", "float", "int", "str"):
        if annotation.startswith(kind):
            return kind
    return "any"


def _coerce(kind: str, value: Any) -> Any:
    """``value`` as a field of ``kind`` allows, or None when it cannot be: readers then trust the
    attribute's type."""
    if value is None or kind == "any":
        return value
    if kind == "dict":
        return value if isinstance(value, dict) else None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind in ("int", "float"):
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, str) and kind == "float":
            return _NON_FINITE.get(value.strip().lower())
        return None
    return value if isinstance(value, str) else str(value)


#: Per class: (name, kind, default, has a default) of each field, worked out once.
_PLANS: dict[type, tuple[tuple[str, str, Any, bool], ...]] = {}
#: Value types that need no coercion for each kind (the common case, checked by identity).
_FAST = {"float": (float, int), "int": (int,), "str": (str,), "dict": (dict,), "bool": (bool,)}


def _plan(cls: type[Event]) -> tuple[tuple[str, str, Any, bool], ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple(
            (f.name, _kind(str(f.type)), f.default, f.default is not dataclasses.MISSING)
            for f in dataclasses.fields(cls)
            if f.default_factory is dataclasses.MISSING
        )
    return plan


def _decode_known(cls: type[Event], record: dict[str, Any]) -> Event:
    kwargs: dict[str, Any] = {}
    for name, kind, default, has_default in _plan(cls):
        if name in record:
            value = record[name]
            if value is not None and type(value) not in _FAST.get(kind, ()):
                value = _coerce(kind, value)
            if value is None and has_default:
                value = default  # a wrong or null value reads as the default, like a missing one
            kwargs[name] = value
        elif not has_default:
            kwargs[name] = None  # a required field the line lacks
    return cls(**kwargs)


def is_newer(record: dict[str, Any]) -> bool:
    """Whether the record says it follows a newer schema than :data:`SCHEMA_VERSION`: its fields
    may mean something else, so it is not decoded as the type this reader knows by that name."""
    v = record.get("v")
    return isinstance(v, int) and not isinstance(v, bool) and v > SCHEMA_VERSION


def decode(record: dict[str, Any]) -> Event | None:
    """The typed event for a record read from ``events.jsonl``, or None for an unknown type (or
    one written under a newer schema, see :func:`is_newer`).

    Unknown fields are dropped, missing ones take their default (None for required ones) and
    values of the wrong kind read as None, so a record from a newer or older engine still decodes.
    """
    cls = EVENT_TYPES.get(str(record.get("type")))
    return None if cls is None or is_newer(record) else _decode_known(cls, record)


def decode_any(record: dict[str, Any]) -> Event:
    """Like :func:`decode`, but an unknown type becomes an :class:`UnknownEvent` (see module docs)."""
    event = decode(record)
    if event is not None:
        return event
    t = record.get("t")
    stamp = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
    return UnknownEvent(record=dict(record), t=stamp)
