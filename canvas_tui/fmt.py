"""Number, size, time and sparkline formatting for the console. Plain Python: no Textual, no torch.

Every function accepts what ``events.jsonl`` may hold for a number: an int, a float, None, or
the strings ``"nan"``, ``"inf"``, ``"-inf"`` the writer uses for non-finite floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SPARK_CHARS = "▁▂▃▄▅▆▇█"


def num(value: Any) -> float | None:
    """A float for a number or a non-finite string (``"nan"``), None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf"):
        return float(value.strip().lower())
    return None


def finite(value: Any) -> float | None:
    """Like :func:`num` but None for non-finite values."""
    v = num(value)
    return v if v is not None and math.isfinite(v) else None


def fmt_num(value: Any, digits: int = 4) -> str:
    """``3.2100``, ``1.2e-05``, ``nan``, ``-``."""
    v = num(value)
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{max(1, digits - 2)}e}"
    return f"{v:.{digits}f}"


def fmt_loss(value: Any) -> str:
    return fmt_num(value, 4)


def fmt_si(value: Any, unit: str = "") -> str:
    """``12.3k``, ``4.5M``, ``980``."""
    v = finite(value)
    if v is None:
        return "-"
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.1f}{suffix}{unit}"
    return f"{v:.0f}{unit}"


def fmt_bytes(value: Any) -> str:
    """Binary units: ``31.2 GiB``."""
    v = finite(value)
    if v is None:
        return "-"
    for size, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(v) >= size:
            return f"{v / size:.1f} {suffix}"
    return f"{v:.0f} B"


def fmt_bytes_pair(used: Any, total: Any) -> str:
    """``30.0/80.0 GiB``: both in the unit of the total."""
    u, t = finite(used), finite(total)
    if t is None:
        return fmt_bytes(u)
    for size, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")):
        if abs(t) >= size or size == 1:
            left = "-" if u is None else f"{u / size:.1f}"
            return f"{left}/{t / size:.1f} {suffix}"
    return "-"  # pragma: no cover


def fmt_duration(seconds: Any) -> str:
    """``45s``, ``12m05s``, ``3h04m``, ``2d05h``; ``-`` when unknown."""
    v = finite(seconds)
    if v is None or v < 0:
        return "-"
    s = round(v)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fmt_age(seconds: Any) -> str:
    """``3s``, ``12m``, ``5h``, ``2d``: enough to tell runs apart at a glance."""
    v = finite(seconds)
    if v is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if v >= size:
            return f"{int(v // size)}{unit}"
    return f"{int(max(0.0, v))}s"


def fmt_step(step: Any, total: Any) -> str:
    if step is None:
        return "-" if total is None else f"0/{total}"
    return f"{step}/{total}" if total else str(step)


def fmt_trainable(trainable: Any, total: Any) -> str:
    """``32,768 trainable of 172,352 (19.0%)``: a fine-tune's adapter share of the whole model."""
    t, n = finite(trainable), finite(total)
    if t is None:
        return "-"
    if n is None or n <= 0:
        return f"{t:,.0f} trainable"
    share = 100 * t / n
    return (
        f"{t:,.0f} trainable of {n:,.0f} ({share:.1f}%)"
        if share >= 1 or share == 0
        else (f"{t:,.0f} trainable of {n:,.0f} ({share:.2g}%)")
    )


def clip(text: str, width: int, *, middle: bool = False) -> str:
    """``text`` cut to ``width`` characters, the cut marked with an ellipsis: at the end, or in the
    ``middle`` (for paths and ids, whose end says the most: ``/home/me/…/llama-7b``)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if not middle or width < 8:
        return text[: width - 1] + "…"
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def fmt_pct(value: Any) -> str:
    v = finite(value)
    return "-" if v is None else f"{v:.0f}%"


def sparkline(
    values: Sequence[float | None], width: int, *, lo: float | None = None, hi: float | None = None
) -> str:
    """A one-line chart of ``values`` in ``width`` cells (bucket means; gaps for missing).

    The scale is the values' own min-max unless ``lo``/``hi`` fix it: utilisation and memory use
    pass ``0, 100`` so that 12% looks like 12%, not like a full bar.
    """
    if width <= 0:
        return ""
    clean = [v if v is not None and math.isfinite(v) else None for v in values]
    if not clean:
        return ""
    if len(clean) > width:
        buckets = []
        size = len(clean) / width
        for b in range(width):
            chunk = [v for v in clean[int(b * size) : int((b + 1) * size)] if v is not None]
            buckets.append(sum(chunk) / len(chunk) if chunk else None)
        clean = buckets
    present = [v for v in clean if v is not None]
    if not present:
        return " " * len(clean)
    lo = min(present) if lo is None else lo
    hi = max(present) if hi is None else hi
    span = hi - lo
    out = []
    for v in clean:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(SPARK_CHARS[len(SPARK_CHARS) // 2])
        else:
            frac = min(1.0, max(0.0, (v - lo) / span))
            out.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, int(frac * len(SPARK_CHARS)))])
    return "".join(out)


BAR_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(pct: Any, width: int) -> tuple[str, str]:
    """A horizontal bar of ``pct`` (0-100, fixed scale) in ``width`` cells, eighth-cell precise.

    Returns ``(filled, empty)`` so the caller styles them apart; missing values give no fill.
    """
    if width <= 0:
        return "", ""
    v = finite(pct)
    eighths = 0 if v is None else round(max(0.0, min(100.0, v)) / 100 * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (BAR_EIGHTHS[part] if part else "")
    return filled, " " * (width - len(filled))


def level(value: Any, low: float, high: float) -> str:
    """``low``/``mid``/``high`` for threshold colouring (nvitop: GPU 10/75, memory 10/80)."""
    v = finite(value)
    if v is None:
        return "none"
    return "low" if v < low else ("high" if v >= high else "mid")


def clean_text(text: Any) -> str:
    """A single displayable line: str() of anything, control characters (bar tab) replaced."""
    s = str(text)
    return "".join(ch if ch == "\t" or (ch >= " " and ch != "\x7f") else "�" for ch in s)
