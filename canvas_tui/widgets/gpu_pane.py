"""The GPU pane, nvitop-style: one line per GPU, fixed 0-100% scales, the odd card out marked.

Each line: index, utilisation bar and %, memory bar and used/total, temperature, power/limit, SM
clock and a utilisation history sparkline, as the pane's width allows. Fields drop from the right
(history, clock, power) before the bars get shorter than :data:`MIN_BAR`; below that the line is
compact: numbers only. Bars and sparklines have fixed scales, so 12% looks like 12%.

With two or more GPUs the straggler (lowest utilisation, when it lags the busiest card by
:data:`STRAGGLER_GAP` points) and the hottest card (when it runs :data:`HOT_GAP` degrees above the
coolest, or at :data:`HOT_C`) are highlighted and tagged ``slow`` / ``hot``. Threshold colours
follow nvitop (utilisation 10/75 %, memory 10/80 %). With no ``gpu`` samples the pane says why:
the reason from the sampler's "unavailable" event, else "no GPU telemetry".
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content

from canvas_tui.fmt import bar, clean_text, clip, finite, fmt_bytes_pair, level, sparkline
from canvas_tui.viewmodel import GpuState, RunView
from canvas_tui.widgets.panes import LEVEL_STYLE, Pane
from canvas_tui.widgets.quiet import update_pane

MIN_BAR = 6
MAX_BAR = 20
SPARK = 12
STRAGGLER_GAP = 10.0
HOT_GAP = 5.0
HOT_C = 85.0


@dataclass(frozen=True)
class GpuLine:
    """One GPU's latest numbers, as the line shows them."""

    index: int
    util: float | None
    mem_pct: float | None
    mem: str
    temp: float | None
    power: str
    clock: str
    history: tuple[float | None, ...]

    @classmethod
    def of(cls, gpu: GpuState) -> GpuLine | None:
        s = gpu.latest
        if s is None:
            return None
        used, total = finite(s.mem_used), finite(s.mem_total)
        power, cap = finite(s.power), finite(s.power_limit)
        clock = finite(s.sm_clock)
        return cls(
            index=gpu.index,
            util=finite(s.util),
            mem_pct=100.0 * used / total if used is not None and total else None,
            mem=fmt_bytes_pair(used, total),
            temp=finite(s.temp),
            power="" if power is None else f"{power:.0f}" + (f"/{cap:.0f}" if cap else "") + "W",
            clock="" if clock is None else f"{clock:.0f}MHz",
            history=tuple(gpu.util),
        )


def odd_ones(lines: list[GpuLine]) -> tuple[int | None, int | None]:
    """(straggler, hottest): the GPU indexes to highlight, or None (see the module docs)."""
    if len(lines) < 2:
        return None, None
    straggler = hottest = None
    utils = [(g.util, g.index) for g in lines if g.util is not None]
    if len(utils) >= 2:
        lo, hi = min(utils), max(utils)
        if hi[0] - lo[0] >= STRAGGLER_GAP:
            straggler = lo[1]
    temps = [(g.temp, g.index) for g in lines if g.temp is not None]
    if len(temps) >= 2:
        cold, hot = min(temps), max(temps)
        if hot[0] - cold[0] >= HOT_GAP or hot[0] >= HOT_C:
            hottest = hot[1]
    return straggler, hottest


def _layout(width: int, lines: list[GpuLine], tags: bool) -> tuple[int, list[str]]:
    """Bar width and the optional fields that fit ``width`` (bar 0: the compact, numbers-only form)."""
    idx = max(len(str(g.index)) for g in lines)
    mem = max(len(g.mem) for g in lines)
    power = max(len(g.power) for g in lines)
    clock = max(len(g.clock) for g in lines)
    fixed = idx + 1 + 1 + 4 + 2 + 1 + mem  # "0 <bar> 80%  <bar> 30.0/80.0 GiB"
    optional = [("temp", 6), ("power", 2 + power if power else 0), ("tag", 6 if tags else 0)]
    optional += [("clock", 2 + clock if clock else 0), ("spark", 2 + SPARK)]
    optional = [(name, w) for name, w in optional if w]
    while True:
        room = width - fixed - sum(w for _, w in optional)
        bar_width = min(MAX_BAR, room // 2)
        if bar_width >= MIN_BAR or not optional:
            break
        optional.pop()
    if bar_width < MIN_BAR:
        return 0, ["temp", "power", "tag"]  # compact: no bars; the Content wraps what does not fit
    return bar_width, [name for name, _ in optional]


def gpu_line(
    g: GpuLine, bar_width: int, fields: list[str], widths: tuple[int, int, int], tag: str
) -> Content:
    """One GPU's line (``widths``: index, memory text and power text, for alignment)."""
    idx_w, mem_w, power_w = widths
    util_style = LEVEL_STYLE[level(g.util, 10, 75)]
    mem_style = LEVEL_STYLE[level(g.mem_pct, 10, 80)]
    pct = "  - " if g.util is None else f"{g.util:3.0f}%"
    parts: list[tuple[str, str] | str] = [
        (str(g.index).rjust(idx_w), "bold reverse $warning" if tag else "bold"),
        " ",
    ]
    if bar_width:
        filled, empty = bar(g.util, bar_width)
        parts += [(filled, util_style), (empty, "on $boost"), " "]
    parts += [(pct, "bold $warning" if tag == "slow" else util_style), "  "]
    if bar_width:
        filled, empty = bar(g.mem_pct, bar_width)
        parts += [(filled, mem_style), (empty, "on $boost"), " "]
    else:
        parts += [("   -" if g.mem_pct is None else f"{g.mem_pct:3.0f}%", mem_style), " "]
    parts.append(g.mem.ljust(mem_w))
    if "temp" in fields:
        temp = "   -" if g.temp is None else f"{g.temp:.0f}°C".rjust(4)
        hot = tag == "hot" or (g.temp or 0) >= HOT_C
        parts += ["  ", (temp, "bold $error" if hot else "")]
    if "power" in fields:
        parts += ["  ", (g.power.rjust(power_w), "")]
    if "clock" in fields and g.clock:
        parts += ["  ", (g.clock.rjust(7), "$text-muted")]
    if "spark" in fields:
        parts += ["  ", (sparkline(list(g.history), SPARK, lo=0, hi=100).ljust(SPARK), "$primary")]
    if "tag" in fields and tag:
        parts += ["  ", (tag, "bold $warning")]
    return Content.assemble(*parts)


def compact_cell(g: GpuLine, bar_width: int, idx_w: int, tag: str) -> Content:
    """One GPU in the two-per-line form: index, utilisation bar and %, memory bar and %, temperature."""
    parts: list[tuple[str, str] | str] = [
        (str(g.index).rjust(idx_w), "bold reverse $warning" if tag else "bold"),
        " ",
    ]
    for value, lo_hi, suffix in ((g.util, (10, 75), " "), (g.mem_pct, (10, 80), "")):
        style = LEVEL_STYLE[level(value, *lo_hi)]
        filled, empty = bar(value, bar_width)
        pct = "  - " if value is None else f"{value:3.0f}%"
        parts += [
            (filled, style),
            (empty, "on $boost"),
            " ",
            (pct, "bold $warning" if tag == "slow" and suffix else style),
            " ",
        ]
    temp = "   -" if g.temp is None else f"{g.temp:.0f}°C".rjust(4)
    parts += [
        (temp, "bold $error" if tag == "hot" or (g.temp or 0) >= HOT_C else ""),
        " ",
        (tag.ljust(4), "bold $warning"),
    ]
    return Content.assemble(*parts)


#: The two-per-line form is used when the terminal has at most this many rows and there are at least
#: :data:`COMPACT_MIN_GPUS` GPUs: eight GPUs take four lines at 80x24.
COMPACT_ROWS = 30
COMPACT_MIN_GPUS = 4
COMPACT_CELL = 32


class GpuPane(Pane):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("GPU", id=id)
        self._view: RunView | None = None
        self.straggler: int | None = None
        self.hottest: int | None = None
        self.compact = False
        self.title_text = "GPU"

    def on_resize(self) -> None:
        if self._view is not None:
            self.show(self._view)

    def show(self, view: RunView, width: int | None = None) -> None:
        self._view = view
        lines = [line for line in (GpuLine.of(view.gpus[i]) for i in sorted(view.gpus)) if line]
        if not lines:
            self.straggler = self.hottest = None
            self.border_title = self.title_text = "GPU"
            reason = view.gpu_unavailable or "no GPU telemetry"
            update_pane(
                self,
                Content.assemble(
                    ("no GPU: " if view.gpu_unavailable else "", "$warning"),
                    (clean_text(reason), "$text-muted"),
                ),
            )
            return
        width = width or self.content_size.width or 76
        self.straggler, self.hottest = odd_ones(lines)
        tags = {}
        if self.hottest is not None:
            tags[self.hottest] = "hot"
        if self.straggler is not None:
            tags[self.straggler] = "slow"  # the straggler wins: it holds the others back
        self.title_text = self._title(view, len(lines), width)  # plain (border_title reads back as markup)
        self.border_title = Content(self.title_text)  # a GPU name is not markup
        idx_w = max(len(str(g.index)) for g in lines)
        rows = self.app.size.height if self.is_attached else 48
        if rows <= COMPACT_ROWS and len(lines) >= COMPACT_MIN_GPUS and width >= 2 * COMPACT_CELL + 2:
            self.compact = True
            cell = (width - 2) // 2
            bar_width = max(3, (cell - idx_w - 22) // 2)
            cells = [compact_cell(g, bar_width, idx_w, tags.get(g.index, "")) for g in lines]
            pairs = [Content("  ").join(cells[i : i + 2]) for i in range(0, len(cells), 2)]
            update_pane(self, Content("\n").join(pairs))
            return
        bar_width, fields = _layout(width, lines, bool(tags))
        self.compact = bar_width == 0
        widths = (idx_w, max(len(g.mem) for g in lines), max(len(g.power) for g in lines))
        update_pane(
            self,
            Content("\n").join(gpu_line(g, bar_width, fields, widths, tags.get(g.index, "")) for g in lines),
        )

    @staticmethod
    def _title(view: RunView, count: int, width: int) -> str:
        """``GPUs · 8 × NVIDIA H100 80GB HBM3``; mixed or partly unnamed cards list their names."""
        named = [
            clean_text(g.latest.name) for g in view.gpus.values() if g.latest is not None and g.latest.name
        ]
        names = sorted(set(named))
        title = "GPU" if count == 1 else f"GPUs · {count}"
        if len(names) == 1 and len(named) == count:
            title += (" × " if count > 1 else " · ") + names[0]
        elif names:
            title += " · " + ", ".join(names)
        return clip(title, max(8, width - 2))
