"""One way to show an event to a human: the words of ``canvas logs``, the ``canvas train`` follow
output and the console's log pane. Torch-free and Textual-free.

:func:`format_event` gives one line per event (``status: finished``, ``step 5/10  loss 0.6000 …``,
``warning: disk almost full``). The log pane lays the same words out in columns, so it takes them
in two parts: :func:`event_label` (``warning``, ``status``) and :func:`event_text` (the rest);
``format_event`` is ``label: text`` (a metric is its text alone, which starts with ``step``).

Text from the run (log messages, paths, names) is untrusted: every line comes out as one line of
plain text with control characters (newlines, terminal escapes) replaced, and callers that render
it in the console must do so as plain text (``Text``/``Content``, ``markup=False``), never markup.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from engine.runs.events import (
    SCHEMA_VERSION,
    Carbon,
    Checkpoint,
    Eval,
    Event,
    Gpu,
    Log,
    Metric,
    Progress,
    Request,
    RunInfo,
    Sample,
    Status,
    System,
    UnknownEvent,
)

#: Fields shown in bytes (binary units) in the compact telemetry lines.
_BYTE_FIELDS = frozenset(
    ("mem_used", "mem_total", "proc_mem", "ram_used", "ram_total", "rss", "disk_free", "cuda_peak")
)
_ENVELOPE = ("v", "t", "type")


def plain(text: Any) -> str:
    """``text`` as one displayable line: control characters (bar tab) replaced by ``�``, so a
    message cannot break the line or move a terminal's cursor."""
    s = str(text)
    return "".join(ch if ch == "\t" or (ch >= " " and ch != "\x7f") else "\ufffd" for ch in s)


def fmt_num(value: Any, digits: int = 4) -> str:
    """``0.6000``, ``1e-05``, ``123456``, ``nan``; ``-`` for None."""
    if value is None or isinstance(value, bool):
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if value != value else ("inf" if value > 0 else "-inf")
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return plain(value)


def fmt_rate(value: Any) -> str:
    """``2.5k`` or ``980``: a throughput at a glance; ``-`` for None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def fmt_bytes(value: Any) -> str:
    """``3.2GiB``, ``512.0MiB``, ``900B`` (compact, for one-line telemetry)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    for size, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:.0f}B"


def fmt_duration(seconds: Any) -> str:
    """``45s``, ``12m05s``, ``3h04m``, ``2d05h``; ``-`` when unknown."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        return "-"
    if seconds < 0:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fmt_step(step: Any, total: Any) -> str:
    """``5/10``, ``5``, ``0/10`` before the first step, ``-`` when nothing is known."""
    if step is None:
        return "-" if total is None else f"0/{total}"
    return f"{step}/{total}" if total is not None else str(step)


def clock(t: Any) -> str:
    """The local wall-clock time of an event, ``HH:MM:SS`` (``--:--:--`` without a time)."""
    if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
        return datetime.fromtimestamp(t).strftime("%H:%M:%S")
    return "--:--:--"


def _pairs(fields: dict[str, Any], digits: int = 2) -> str:
    return " ".join(
        f"{k}={fmt_bytes(v) if k in _BYTE_FIELDS else fmt_num(v, digits)}"
        for k, v in fields.items()
        if v is not None and k not in _ENVELOPE
    )


def _fields(event: Event, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in vars(event).items() if k != "t" and k not in skip}


def event_label(event: Event) -> str:
    """The short tag of an event: the level of a log line, ``gpu0`` for GPU 0, else its type."""
    if isinstance(event, Log):
        return plain(event.level or "info")
    if isinstance(event, Gpu) and isinstance(event.index, int) and event.index >= 0:
        return f"gpu{event.index}"
    if isinstance(event, RunInfo):
        return "run"
    if isinstance(event, Progress):
        return plain(event.phase or "progress")
    if isinstance(event, Eval):
        return f"eval @ step {fmt_step(event.step, None)}"
    if isinstance(event, Sample):
        return f"sample @ step {fmt_step(event.step, None)}"
    return plain(event.type)


def _metric(m: Metric, total_steps: int | None) -> str:
    parts = [f"step {fmt_step(m.step, total_steps)}", f"loss {fmt_num(m.loss)}"]
    if m.lr is not None:
        parts.append(f"lr {m.lr:.3g}")
    if m.grad_norm is not None:
        parts.append(f"grad {fmt_num(m.grad_norm, 3)}")
    if m.tokens_per_s is not None:
        parts.append(f"{fmt_rate(m.tokens_per_s)} tok/s")
    if m.step_time is not None:
        parts.append(f"{m.step_time:.3f} s/step")
    return "  ".join(parts)


def _run_info(r: RunInfo) -> str:
    params = f"{r.params:,} params" if r.params is not None else None
    bits: list[str | None]
    if r.trainable_params is not None:  # a fine-tune: the base, and what trains
        share = 100 * r.trainable_params / max(1, r.params or 1)
        quant = f" ({r.quantization})" if r.quantization else ""
        bits = [
            f"base {r.base}{quant}" if r.base else None,
            params,
            f"{r.trainable_params:,} trainable ({share:.2f}%)",
        ]
    else:
        bits = [params]
    if r.precision:
        bits.append(r.precision + (f" ({r.precision_reason})" if r.precision_reason else ""))
    steps = f"{r.total_steps} steps" if r.total_steps is not None else None
    bits.append(f"{steps} on {r.device}" if steps and r.device else steps or (r.device and f"on {r.device}"))
    if r.resumed_from is not None:
        bits.append(f"resumed from step {r.resumed_from}")
    return ", ".join(b for b in bits if b) or "-"


def _progress(p: Progress) -> str:
    unit = f" {p.unit}" if p.unit else ""
    if p.total:
        text = f"{fmt_num(p.done, 0)}/{fmt_num(p.total, 0)}{unit} ({100 * p.done / p.total:.0f}%)"
    else:
        text = f"{fmt_num(p.done, 0)}{unit}"
    if p.eta is not None:
        text += f", eta {fmt_duration(p.eta)}"
    return text


def _request(r: Request) -> str:
    """``POST /v1/chat/completions 200 stream  12+40 tokens  0.52 s  77 tok/s  stop``."""
    bits = [" ".join(str(b) for b in (r.method, r.endpoint, r.status) if b is not None)]
    if r.stream:
        bits[0] += " stream"
    if r.prompt_tokens is not None or r.completion_tokens is not None:
        bits.append(f"{fmt_num(r.prompt_tokens)}+{fmt_num(r.completion_tokens)} tokens")
    if r.duration_s is not None:
        bits.append(f"{fmt_num(r.duration_s, 2)} s")
    if r.tokens_per_s is not None:
        bits.append(f"{fmt_rate(r.tokens_per_s)} tok/s")
    if r.finish_reason:
        bits.append(r.finish_reason)
    if r.error:
        bits.append(r.error)
    return "  ".join(bits)


def event_text(event: Event, total_steps: int | None = None) -> str:
    """What an event says, without its label (see :func:`event_label`): for a log line its
    message, for a status ``state`` (``: message``), for a metric ``step 5/10  loss …``.

    ``total_steps`` (from ``run_info`` or run.json) turns ``step 5`` into ``step 5/10``.
    """
    if isinstance(event, Metric):
        text = _metric(event, total_steps)
    elif isinstance(event, Eval):
        text = f"validation loss {fmt_num(event.val_loss)} (perplexity {fmt_num(event.perplexity, 2)})"
        for name, value in (event.metrics or {}).items():
            text += f"  {name} {fmt_num(value)}"
    elif isinstance(event, Checkpoint):
        text = f"({event.kind}) @ step {fmt_step(event.step, None)} -> {event.path}"
        if event.val_loss is not None:
            text += f" (val_loss {fmt_num(event.val_loss)})"
    elif isinstance(event, Status):
        text = f"{event.state}" + (f": {event.message}" if event.message else "")
    elif isinstance(event, Log):
        text = event.message or ""
    elif isinstance(event, RunInfo):
        text = _run_info(event)
    elif isinstance(event, Progress):
        text = _progress(event)
    elif isinstance(event, Request):
        text = _request(event)
    elif isinstance(event, Sample):  # the prompt, then what the model wrote after it, on one line
        text = f"{event.prompt or ''!r} -> {event.text or ''!r}"
    elif isinstance(event, Gpu) and (event.index is None or event.index < 0 or event.unavailable):
        text = "unavailable" + (f" ({event.reason})" if event.reason else "")
    elif isinstance(event, Gpu):
        text = _pairs(_fields(event, ("index",)))
    elif isinstance(event, System):
        text = _pairs(_fields(event))
    elif isinstance(event, Carbon):  # small running totals: more digits
        text = _pairs(_fields(event), 4)
    elif isinstance(event, UnknownEvent) and event.newer:  # its fields may mean something else
        text = (
            f"written by a newer Neural Canvas (event schema v{event.record.get('v')}; this one reads "
            f"v{SCHEMA_VERSION}): {_pairs(event.record)}"
        )
    elif isinstance(event, UnknownEvent):
        text = _pairs(event.record)
    else:
        text = _pairs(_fields(event))
    return plain(text)


def format_event(event: Event, total_steps: int | None = None) -> str:
    """One plain line a human reads for any event (see the module docs); no time stamp."""
    text = event_text(event, total_steps)
    if isinstance(event, Metric):
        return text
    label = event_label(event)
    if isinstance(event, Checkpoint):
        return f"{label} {text}"
    return f"{label}: {text}" if text else label


def format_line(event: Event, total_steps: int | None = None) -> str:
    """:func:`format_event` after the event's local time: ``12:03:04  status: finished``."""
    return f"{clock(event.t)}  {format_event(event, total_steps)}"


def skipped_note(count: int, name: str = "events.jsonl") -> str | None:
    """The one note a front end shows for lines it could not read, or None when there were none."""
    if count <= 0:
        return None
    return f"skipped {count} unreadable line{'s' if count != 1 else ''} in {name}"
