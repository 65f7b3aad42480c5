"""Round axis ticks for the plots: ``0, 5k, 10k, 15k`` and ``0.001, 0.002``, never ``5007.5``.

Pure Python (no Textual): :func:`nice_ticks` picks ticks at multiples of 1, 2 or 5 times a power of
ten inside ``[lo, hi]``; :func:`tick_labels` writes them as short as the step allows (SI suffixes
from a thousand up, plain decimals down to 0.001, then ``1e-05`` notation). A range that starts at
zero or above never gets a negative tick.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

#: Mantissas of a "round" step.
STEPS = (1.0, 2.0, 5.0, 10.0)


def nice_step(span: float, count: int) -> float:
    """The smallest round step (1, 2 or 5 x 10^k) that cuts ``span`` into at most ``count`` parts."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    for mantissa in STEPS:
        if mantissa * power >= raw * (1 - 1e-9):
            return mantissa * power
    return 10.0 * power  # pragma: no cover - STEPS ends with 10


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round ticks inside ``[lo, hi]``: the finest round step that gives at most ``count`` ticks.

    A degenerate range (``lo == hi``) gives that one value; non-finite bounds give none.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return [lo]
    count = max(2, count)
    step = nice_step(hi - lo, count * 4)
    while True:
        first = math.ceil(lo / step - 1e-9)
        last = math.floor(hi / step + 1e-9)
        if last - first + 1 <= count:
            break
        step = nice_step(step * 1.0001, 1)  # the next round step up
    ticks = [_round(k * step, step) for k in range(first, last + 1)]
    if lo >= 0:
        ticks = [t for t in ticks if t >= 0]
    return [0.0 if t == 0 else t for t in ticks] or [lo]


def _round(value: float, step: float) -> float:
    """``value`` without float noise (``0.30000000000000004`` -> ``0.3``) at the step's precision."""
    digits = max(0, 1 - math.floor(math.log10(step))) if step > 0 else 6
    return round(value, digits)


def _decimals(step: float) -> int:
    """Decimals that show a step of this size exactly (0.25 -> 2, 5 -> 0)."""
    for d in range(0, 12):
        if abs(round(step, d) - step) <= step * 1e-9:
            return d
    return 12


def _sci(value: float, step: float) -> str:
    """``1.5e-5``: the mantissa with the digits the step needs, no padding zeros."""
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10.0**exponent
    digits = min(3, _decimals(step / 10.0**exponent))
    return f"{_trim(f'{mantissa:.{digits}f}')}e{exponent}"


def tick_label(value: float, step: float) -> str:
    """One tick written as short as ``step`` allows: ``5k``, ``12.5k``, ``2M``, ``0.001``, ``1e-5``."""
    if value == 0:
        return "0"
    magnitude = max(abs(value), step)
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            return _trim(f"{value / size:.{_decimals(step / size)}f}") + suffix
    if step >= 1e-4:
        return _trim(f"{value:.{_decimals(step)}f}")
    return _sci(value, step)


def _trim(text: str) -> str:
    """``0.0010`` -> ``0.001``, ``1.0`` -> ``1``: round numbers read without padding zeros."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels for ``ticks`` (as :func:`nice_ticks` made them): the step sets the precision."""
    if not ticks:
        return []
    step = min((b - a for a, b in itertools.pairwise(ticks) if b > a), default=0.0)
    if step <= 0:  # one tick: as many digits as it has, up to four significant
        value = ticks[0]
        step = 10.0 ** (math.floor(math.log10(abs(value))) - 3) if value else 1.0
        return [tick_label(value, step)]
    return [tick_label(t, step) for t in ticks]


def log_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round ticks for a log axis over positive ``[lo, hi]``: powers of ten, or 1-2-5 when few."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= 0:
        return []
    if hi < lo:
        lo, hi = hi, lo
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mantissas in ((1.0,), (1.0, 5.0), (1.0, 2.0, 5.0)):
        ticks = [m * 10.0**e for e in range(a, b + 1) for m in mantissas]
        inside = [_round(t, t / 10) for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
        if len(inside) >= 2:
            every = math.ceil(len(inside) / max(2, count))
            return inside[::every]
    # A narrow log range (loss 2.1..2.9): linear round ticks are still round on a log axis.
    return [t for t in nice_ticks(lo, hi, count) if t > 0]
