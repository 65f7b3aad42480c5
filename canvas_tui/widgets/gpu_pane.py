"""One block per GPU: utilisation, memory, temperature, power, with short sparkline history.

Threshold colours follow nvitop (utilisation 10/75 %, memory 10/80 %). With no ``gpu`` samples
the pane says why: the reason from the sampler's "unavailable" event, else "no GPU telemetry".
"""

from __future__ import annotations

from textual.content import Content

from canvas_tui.fmt import clean_text, finite, fmt_bytes, fmt_bytes_pair, fmt_pct, level, sparkline
from canvas_tui.viewmodel import RunView
from canvas_tui.widgets.panes import LEVEL_STYLE, Pane, label

SPARK = 12


class GpuPane(Pane):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("GPU", id=id)

    def show(self, view: RunView) -> None:
        if not view.gpus:
            reason = view.gpu_unavailable or "no GPU telemetry"
            self.update(
                Content.assemble(
                    ("no GPU: " if view.gpu_unavailable else "", "$warning"),
                    (clean_text(reason), "$text-muted"),
                )
            )
            return
        blocks = []
        for index in sorted(view.gpus):
            gpu = view.gpus[index]
            s = gpu.latest
            if s is None:
                continue
            util = finite(s.util)
            used, total = finite(s.mem_used), finite(s.mem_total)
            mem_pct = 100.0 * used / total if used is not None and total else None
            temp, power, cap = finite(s.temp), finite(s.power), finite(s.power_limit)
            temp_text = "-" if temp is None else f"{temp:.0f}°C"
            power_text = "-" if power is None else f"{power:.0f}" + (f"/{cap:.0f}" if cap else "") + " W"
            proc = finite(s.proc_mem)
            # Two lines a GPU, nvitop-style: utilisation, temperature, power; then memory.
            blocks.append(
                Content.assemble(
                    (f"GPU {index}".ljust(6), "bold"),
                    label("util", 5),
                    (fmt_pct(util).rjust(4), LEVEL_STYLE[level(util, 10, 75)]),
                    " ",
                    (sparkline(list(gpu.util), SPARK).ljust(SPARK), "$primary"),
                    "  ",
                    (temp_text, "$warning" if (temp or 0) >= 85 else ""),
                    "  ",
                    power_text,
                    ("" if finite(s.fan) is None else f"  fan {fmt_pct(s.fan)}", "$text-muted"),
                    ("" if s.pstate is None else f"  P{s.pstate}", "$text-muted"),
                    "\n",
                    " " * 6,
                    label("mem", 5),
                    (fmt_pct(mem_pct).rjust(4), LEVEL_STYLE[level(mem_pct, 10, 80)]),
                    " ",
                    (sparkline(list(gpu.mem_pct), SPARK).ljust(SPARK), "$accent"),
                    "  ",
                    fmt_bytes_pair(used, total),
                    ("" if proc is None else f"  run {fmt_bytes(proc)}", "$text-muted"),
                    ("" if not s.name else "  " + clean_text(s.name), "$text-muted"),
                )
            )
        self.update(Content("\n").join(blocks))
