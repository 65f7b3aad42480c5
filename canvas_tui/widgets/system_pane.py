"""Host telemetry: CPU, RAM, this run's resident memory and free disk, with CPU and RAM history.

The sparklines use a fixed 0-100% scale: 12% CPU looks like 12%, not like a full bar.
"""

from __future__ import annotations

from textual.content import Content

from canvas_tui.fmt import finite, fmt_bytes, fmt_bytes_pair, fmt_pct, level, sparkline
from canvas_tui.viewmodel import RunView
from canvas_tui.widgets.panes import LEVEL_STYLE, Pane, label
from canvas_tui.widgets.quiet import update_pane

SPARK = 12


class SystemPane(Pane):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("System", id=id)
        self._view: RunView | None = None

    def on_resize(self) -> None:
        if self._view is not None:
            self.show(self._view)

    def show(self, view: RunView) -> None:
        self._view = view
        s = view.system
        if s is None:
            update_pane(self, Content.styled("no system telemetry", "$text-muted"))
            return
        cpu = finite(s.cpu_pct)
        used, total = finite(s.ram_used), finite(s.ram_total)
        ram_pct = 100.0 * used / total if used is not None and total else None
        pair = fmt_bytes_pair(used, total)
        width = self.content_size.width or 40
        ram_spark = max(0, min(SPARK, width - 7 - 5 - 2 - len(pair)))
        update_pane(
            self,
            Content.assemble(
                label("cpu"),
                (fmt_pct(cpu).rjust(5), LEVEL_STYLE[level(cpu, 10, 75)]),
                " ",
                (sparkline(list(view.cpu), SPARK, lo=0, hi=100), "$primary"),
                "\n",
                label("ram"),
                (fmt_pct(ram_pct).rjust(5), LEVEL_STYLE[level(ram_pct, 10, 80)]),
                " ",
                (
                    sparkline(list(view.ram_pct), ram_spark, lo=0, hi=100) + " " if ram_spark >= 4 else "",
                    "$accent",
                ),
                pair,
                "\n",
                label("rss"),
                fmt_bytes(s.rss),
                "\n",
                label("disk"),
                f"{fmt_bytes(s.disk_free)} free",
            ),
        )
