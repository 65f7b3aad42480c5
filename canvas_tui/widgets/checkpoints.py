"""The checkpoint list: step, kind, validation loss, path and time of each completed checkpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from canvas_tui.fmt import clean_text, fmt_loss
from engine.runs.events import Checkpoint


class CheckpointList(DataTable):
    DEFAULT_CSS = """
    CheckpointList { border: round $panel-lighten-2; border-title-color: $text-accent; height: auto;
                     max-height: 12; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_row_labels=False)
        self.border_title = "Checkpoints"
        self._shown: list[tuple[Any, ...]] = []

    def on_mount(self) -> None:
        self.add_columns("step", "kind", "val loss", "path", "time")

    def show(self, checkpoints: list[Checkpoint]) -> None:
        rows = [
            (c.step, c.kind, c.val_loss, c.t, c.path)
            for c in sorted(checkpoints, key=lambda c: c.step or 0, reverse=True)
        ]
        if rows == self._shown:
            return
        self._shown = rows
        self.clear()
        if not rows:
            self.add_row(Text("-"), Text("none yet", style="dim"), Text(""), Text(""), Text(""))
            return
        for step, kind, val, t, path in rows:
            stamp = datetime.fromtimestamp(t).strftime("%m-%d %H:%M") if isinstance(t, (int, float)) else "-"
            self.add_row(
                Text(str(step)),
                Text(clean_text(kind or "")),
                Text(fmt_loss(val)),
                Text(clean_text(str(path or "").removeprefix("checkpoints/"))),
                Text(stamp),
            )
