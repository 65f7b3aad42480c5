"""The Runs screen: every run in the store with live status and numbers, nvitop-dense.

A thread worker scans the store (:class:`canvas_tui.runs_model.RunsTracker`) and posts the rows;
the next scan is armed with ``set_timer`` only after the previous one was applied, so scans never
overlap, and none is started while another screen covers this one. Runs started from the CLI or
another console show up at the next scan (about a second).
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import DataTable, Footer, Header, Input, Static

from canvas_tui import actions
from canvas_tui.fmt import clean_text, clip, fmt_age, fmt_loss, fmt_si, fmt_step, sparkline
from canvas_tui.messages import RunsScanned
from canvas_tui.runs_model import RunRow, RunsTracker
from canvas_tui.screens.base import CanvasScreen

#: Theme variable of each status's colour (the table's cells are Rich Text, so the colour is looked
#: up in the current theme when the rows are drawn, and the rows are redrawn on a theme change).
STATUS_COLOR = {
    "running": "success",
    "starting": "accent",
    "finished": "primary",
    "stopped": "warning",
    "failed": "error",
    "crashed": "error",
}
COLUMNS = ("id", "name", "kind", "status", "step", "loss", "val", "best", "curve", "tok/s", "age")
#: From this width on, a "model" column says what each run trains: its parameter count, or for a
#: fine-tune its LoRA adapters and base.
WIDE = 145
WIDE_COLUMNS = (*COLUMNS[:3], "model", *COLUMNS[3:])
MODEL_WIDTH = 26
#: Below this width (an 80-column SSH terminal) id, kind and the training loss are left out and the
#: sparkline is shorter, so every remaining column is readable without scrolling sideways.
NARROW = 110
NARROW_COLUMNS = ("name", "status", "step", "val", "best", "curve", "tok/s", "age")
SPARK_WIDTH = 12
NARROW_SPARK = 8


class RunsScreen(CanvasScreen):
    BINDINGS = actions.bindings("runs")
    AUTO_FOCUS = "#runs-table"

    def __init__(self) -> None:
        super().__init__()
        self.tracker = RunsTracker()
        self.rows: list[RunRow] = []
        self.filter_text = ""
        self.scans = 0
        self.narrow: bool | None = None
        self.wide = False
        self._scan_pending = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs-filter-bar", classes="-hidden"):
            yield Static("filter", id="runs-filter-label")
            yield Input(placeholder="id, name, kind or status", id="runs-filter")
        yield Static(Content(""), id="runs-empty", markup=False)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True, show_row_labels=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Runs"
        self._set_columns(self.size.width)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._render_rows())
        self.scan()

    def on_resize(self, event) -> None:
        if self._set_columns(event.size.width):
            self._render_rows()

    def _set_columns(self, width: int) -> bool:
        narrow, wide = 0 < width < NARROW, width >= WIDE
        if (narrow, wide) == (self.narrow, self.wide):
            return False
        self.narrow, self.wide = narrow, wide
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        for name in self._columns():
            table.add_column(name, key=name)
        return True

    def _columns(self) -> tuple[str, ...]:
        return NARROW_COLUMNS if self.narrow else (WIDE_COLUMNS if self.wide else COLUMNS)

    def _style(self, variable: str | None, bold: bool = False) -> str:
        color = self.app.theme_variables.get(variable or "", "") if variable else ""
        style = color if color.startswith("#") else ""
        if not variable:
            style = "dim"
        return f"bold {style}".strip() if bold else style

    # ------------------------------------------------------------------------ scanning (worker)
    def scan(self) -> None:
        if self._scan_pending:
            return
        self._scan_pending = True
        self._scan_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-scan")
    def _scan_worker(self) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        rows = self.tracker.scan(cancelled=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(RunsScanned(rows))

    @on(RunsScanned)
    def _on_scanned(self, message: RunsScanned) -> None:
        self._scan_pending = False
        self.scans += 1
        self.rows = message.rows
        self._render_rows()
        self.set_timer(self.canvas.poll_interval, self._rearm)

    def _rearm(self) -> None:
        if self.is_current:
            self.scan()
        else:  # covered by another screen: check again later, scan on return (on_screen_resume)
            self._scan_pending = False

    def on_screen_resume(self) -> None:
        self.scan()

    # ------------------------------------------------------------------------ rendering
    def visible_rows(self) -> list[RunRow]:
        return [r for r in self.rows if r.matches(self.filter_text)]

    def _render_rows(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        selected = self.selected_id()
        rows = self.visible_rows()
        now = self.canvas.clock()
        with self.app.batch_update():
            table.clear()
            for row in rows:
                table.add_row(*self._cells(row, now), key=row.id)
            if selected is not None and selected in {r.id for r in rows}:
                table.move_cursor(row=table.get_row_index(selected), animate=False)
        empty = self.query_one("#runs-empty", Static)
        if not self.rows:
            empty.update(
                Content.assemble(
                    ("No runs yet.", "bold"), "  Press n to start one, or run `canvas train` in a shell."
                )
            )
        elif not rows:
            empty.update(
                Content.assemble(
                    "No run matches the filter ", (repr(self.filter_text), "bold"), ". esc clears it."
                )
            )
        else:
            empty.update(Content(""))
        empty.display = not rows
        count = f"{len(rows)} of {len(self.rows)}" if self.filter_text else str(len(self.rows))
        live = sum(r.status in ("running", "starting") for r in self.rows)
        self.sub_title = f"Runs · {count} · {live} live"

    def _cells(self, row: RunRow, now: float) -> list[Text]:
        short = row.id[:15] + "…" + row.id[-4:] if len(row.id) > 20 else row.id
        status = row.status + ("?" if not row.verified else "")
        spark = NARROW_SPARK if self.narrow else SPARK_WIDTH
        cells = {
            "id": Text(short, style="dim"),
            "name": Text(clean_text(row.name[:24] + "…" if self.narrow and len(row.name) > 25 else row.name)),
            "kind": Text(clean_text(row.kind)),
            "model": Text(clip(clean_text(row.model()), MODEL_WIDTH)),
            "status": Text(status, style=self._style(STATUS_COLOR.get(row.status), bold=True)),
            "step": Text(fmt_step(row.step, row.total_steps), justify="right"),
            "loss": Text(fmt_loss(row.loss), justify="right"),
            "val": Text(fmt_loss(row.last_val), justify="right"),
            "best": Text(fmt_loss(row.best_val), justify="right"),
            "curve": Text(
                sparkline(row.spark, spark).ljust(spark),
                style=self._style("plot-train") or self._style("primary"),
            ),
            "tok/s": Text(fmt_si(row.tokens_per_s), justify="right"),
            "age": Text(fmt_age(row.age(now)), justify="right"),
        }
        return [cells[name] for name in self._columns()]

    # ------------------------------------------------------------------------ selection
    def selected_id(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0:
            return None
        try:
            key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def selected_row(self) -> RunRow | None:
        run_id = self.selected_id()
        return next((r for r in self.rows if r.id == run_id), None)

    def _need_row(self) -> RunRow | None:
        row = self.selected_row()
        if row is None:
            self.notify("No run selected.", severity="warning")
        return row

    # ------------------------------------------------------------------------ actions
    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        row = self._need_row()
        if row is not None:
            self.canvas.open_dashboard(row.path)

    def action_new_run(self) -> None:
        self.canvas.action_new_run()

    def action_stop_run(self) -> None:
        row = self._need_row()
        if row is not None:
            self.canvas.confirm_control("stop", row.path, row.name)

    def action_resume_run(self) -> None:
        row = self._need_row()
        if row is not None:
            self.canvas.run_control("resume", row.path)

    def action_checkpoint_run(self) -> None:
        row = self._need_row()
        if row is not None:
            self.canvas.run_control("checkpoint", row.path)

    def action_delete_run(self) -> None:
        row = self._need_row()
        if row is not None:
            self.canvas.confirm_control(
                "delete", row.path, row.name, live=row.status in ("running", "starting")
            )

    def action_talk(self) -> None:
        row = self._need_row()
        if row is not None:
            self.canvas.talk_to_run(row.path)

    def action_filter(self) -> None:
        bar = self.query_one("#runs-filter-bar")
        bar.remove_class("-hidden")
        self.query_one("#runs-filter", Input).focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#runs-filter", Input)
        field.value = ""
        self.filter_text = ""
        self.query_one("#runs-filter-bar").add_class("-hidden")
        self.query_one("#runs-table").focus()
        self._render_rows()

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._render_rows()

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#runs-table").focus()
        if not self.filter_text:
            self.query_one("#runs-filter-bar").add_class("-hidden")
