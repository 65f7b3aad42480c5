"""Host telemetry: CPU, RAM, this run's resident memory and free disk, with CPU history."""

from __future__ import annotations

from textual.content import Content

from canvas_tui.fmt import finite, fmt_bytes, fmt_bytes_pair, fmt_pct, level, sparkline
from canvas_tui.viewmodel import RunView
from canvas_tui.widgets.panes import LEVEL_STYLE, Pane, label


class SystemPane(Pane):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("System", id=id)

    def show(self, view: RunView) -> None:
        s = view.system
        if s is None:
            self.update(Content.styled("no system telemetry", "$text-muted"))
            return
        cpu = finite(s.cpu_pct)
        used, total = finite(s.ram_used), finite(s.ram_total)
        ram_pct = 100.0 * used / total if used is not None and total else None
        self.update(
            Content.assemble(
                label("cpu"),
                (fmt_pct(cpu).rjust(5), LEVEL_STYLE[level(cpu, 10, 75)]),
                " ",
                (sparkline(list(view.cpu), 12), "$primary"),
                "\n",
                label("ram"),
                (fmt_pct(ram_pct).rjust(5), LEVEL_STYLE[level(ram_pct, 10, 80)]),
                f" {fmt_bytes_pair(used, total)}",
                "\n",
                label("rss"),
                fmt_bytes(s.rss),
                "\n",
                label("disk"),
                f"{fmt_bytes(s.disk_free)} free",
            )
        )
