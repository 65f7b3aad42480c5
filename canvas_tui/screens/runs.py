"""The Runs screen: every run in the store with live status and numbers, nvitop-dense.

A thread worker scans the store (:class:`canvas_tui.runs_model.RunsTracker`) and posts the rows;
the next scan is armed with ``set_timer`` only after the previous one was applied, so scans never
overlap, and none is started while another screen covers this one (the loop of
:class:`canvas_tui.screens.scanning.ScanningScreen`, shared with the Evaluation screen). Runs
started from the CLI or another console show up at the next scan (about a second). Until the
first scan is in, the screen says how many runs it is reading ("Scanning 90 runs…"), never "No runs yet".

The table's columns are defined once, in :data:`TABLE` (header, the widths that show it, how it
sorts, how its cell is drawn in :meth:`RunsScreen._cells`). Rows are sorted by any column (``<`` /
``>`` or a click on the header; ``I`` or a second click reverses; an arrow in the header says
which), filtered by the filter box (``status:running``, ``tag:baseline`` and words), and drawn
again only when a cell changed: an idle list of finished runs costs a few ``stat`` calls a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import DataTable, Header, Input, Static

from canvas_tui import actions
from canvas_tui.fmt import (
    clean_text,
    clip,
    finite,
    fmt_age,
    fmt_duration,
    fmt_loss,
    fmt_si,
    fmt_step,
    sparkline,
)
from canvas_tui.messages import RunsScanned
from canvas_tui.runs_model import RunRow, RunsTracker
from canvas_tui.screens.scanning import ScanningScreen
from canvas_tui.widgets.footer import CanvasFooter
from canvas_tui.widgets.tables import cursor_key
from engine.runs.names import short_hash

#: The run kinds whose directory holds a model the chat worker can load.
TALKABLE_KINDS = ("pretrain", "finetune")

#: Theme variable of each status's colour (the table's cells are Rich Text, so the colour is looked
#: up in the current theme when the rows are drawn, and the rows are redrawn on a theme change).
STATUS_COLOR = {
    "running": "success",
    "starting": "accent",
    "finished": "primary",
    "stopped": "warning",
    "failed": "error",
    "crashed": "error",
    "queued": "accent",
    "unresponsive": "warning",
}
#: The order the status column sorts in: what needs attention first.
STATUS_ORDER = {
    s: i
    for i, s in enumerate(
        ("running", "starting", "queued", "unresponsive", "crashed", "failed", "stopped", "finished")
    )
}
#: From this width on, a "model" column says what each run trains: its parameter count, or for a
#: fine-tune its LoRA adapters and base, and "runtime" for how long it ran.
WIDE = 145
#: From this width on, "tokens" says how many tokens each run has seen.
XWIDE = 170
MODEL_WIDTH = 26
#: Below it the runtime is left out. The id column shows the id's random end (its
#: short hash), which every command takes (`canvas logs 3f2a9c1e`). Below :data:`NARROW` (an
#: 80-column SSH terminal) id, kind, the training loss, activity and tags are left out too and the
#: sparkline is shorter, so every remaining column is readable without scrolling sideways.
NARROW = 110
SPARK_WIDTH = 12
NARROW_SPARK = 8
TAGS_WIDTH = 18


@dataclass(frozen=True)
class Column:
    """One column of the runs table.

    ``sizes`` says which layouts show it (``n`` below :data:`NARROW` columns, ``m`` in between,
    ``w`` from :data:`WIDE`, ``x`` only from :data:`XWIDE`); ``sort`` gives a row's sort key (None
    sorts last, whatever the direction); ``when`` names a flag of the screen that must be on
    (``show_host``)."""

    name: str
    sizes: str
    sort: Callable[[RunRow, float], Any]
    when: str = ""


def _tags_key(row: RunRow, now: float) -> str | None:
    return ",".join(row.tags).lower() or None


#: Every column, in display order: add a column here (and its cell in ``RunsScreen._cells``).
TABLE: tuple[Column, ...] = (
    Column("id", "mw", lambda r, now: r.id),
    Column("name", "nmw", lambda r, now: r.name.lower()),
    Column("kind", "mw", lambda r, now: r.kind),
    Column("model", "w", lambda r, now: r.trainable_params if r.trainable_params is not None else r.params),
    Column("status", "nmw", lambda r, now: STATUS_ORDER.get(r.status, len(STATUS_ORDER))),
    Column("host", "nmw", lambda r, now: r.host.lower() or None, when="show_host"),
    Column("step", "nmw", lambda r, now: r.step),
    Column("loss", "mw", lambda r, now: finite(r.loss)),
    Column("val", "nmw", lambda r, now: r.last_val),
    Column("best", "nmw", lambda r, now: r.best_val),
    Column("curve", "nmw", lambda r, now: r.spark[-1] if r.spark else None),
    Column("tok/s", "nmw", lambda r, now: finite(r.tokens_per_s)),
    Column("tokens", "x", lambda r, now: r.tokens),
    Column("active", "mw", lambda r, now: r.activity(now)),
    Column("runtime", "w", lambda r, now: r.runtime(now)),
    Column("age", "nmw", lambda r, now: r.age(now)),
    Column("tags", "mw", _tags_key),
)
COLUMN_BY_NAME = {c.name: c for c in TABLE}


def layout_columns(width: int, **flags: bool) -> tuple[str, ...]:
    """The columns shown at ``width`` terminal columns (``flags``: the optional ones that are on)."""
    sizes = "n" if 0 < width < NARROW else ("wx" if width >= XWIDE else ("w" if width >= WIDE else "m"))
    return tuple(
        c.name for c in TABLE if any(size in c.sizes for size in sizes) and (not c.when or flags.get(c.when))
    )


def sort_rows(rows: list[RunRow], column: str, reverse: bool, now: float) -> list[RunRow]:
    """``rows`` by ``column``'s key, rows without a value last either way; ties keep their order."""
    key = COLUMN_BY_NAME[column].sort
    keyed = [(key(row, now), row) for row in rows]
    known = [p for p in keyed if p[0] is not None]
    known.sort(key=lambda p: p[0], reverse=reverse)
    return [row for _, row in known] + [row for value, row in keyed if value is None]


class RunsTable(DataTable):
    """The runs table, with vi-style and Home/End keys that move the row cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g,home", "scroll_top", "First run", show=False),
        Binding("G,end", "scroll_bottom", "Last run", show=False),
    ]


class RunsScreen(ScanningScreen):
    SCAN_GROUP = "runs-scan"
    BINDINGS = actions.bindings("runs")
    AUTO_FOCUS = "#runs-table"

    def __init__(self) -> None:
        super().__init__()
        self.tracker = RunsTracker()
        self.rows: list[RunRow] = []
        self.filter_text = ""
        self.narrow: bool | None = None
        self.wide = False
        self.show_host = False  # a "host" column once a run's engine is on another host
        self.sort_column: str | None = None  # None: newest first, as the store lists them
        self.sort_reverse = False
        self.columns: tuple[str, ...] = ()
        self._widths: tuple[int, ...] = ()  # of the columns, as measured from the cells shown
        self._width = 0
        self._rendered: list[tuple[str, tuple]] | None = None  # (run id, cell signatures) on screen
        self._cell_cache: dict[str, tuple[RunRow, tuple[str, ...], list[Text], tuple]] = {}
        self._empty_state: tuple | None = None
        self.marked: list[str] = []  # run ids marked with space for the comparison, in marking order
        #: (run, status) the footer shows: at first no run, so an empty store never rebuilds it.
        self._bound: tuple[str | None, str | None] | None = (None, None)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs-filter-bar", classes="-hidden"):
            yield Static("filter", id="runs-filter-label")
            yield Input(placeholder="words, status:running, tag:baseline", id="runs-filter")
        yield Static(Content(""), id="runs-empty", markup=False)
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True, show_row_labels=False)
        yield CanvasFooter()

    def on_mount(self) -> None:
        self.sub_title = "Runs"
        self._set_columns(self.size.width)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._render_rows(force=True))
        count = self.tracker.count()
        empty = self.query_one("#runs-empty", Static)
        if count:
            empty.update(Content(f"Scanning {count} run{'s' if count != 1 else ''}…"))
        else:
            empty.update(self._no_runs())
        self.scan()

    def on_resize(self, event) -> None:
        if self._set_columns(event.size.width):
            self._render_rows(force=True)

    def _set_columns(self, width: int, force: bool = False, widths: tuple[int, ...] = ()) -> bool:
        """Lay out the table's columns for ``width`` (and the sort arrow); True when they changed.

        ``widths``: each column's width, as :meth:`_render_rows` measured its cells. Given explicitly,
        not left to ``update_cell(update_width=True)``: the DataTable widens a column only when it is
        next idle, and a repaint before that caches the cell cut to the old width (seen under load:
        a run's new tags shown as "base" until the next edit)."""
        self._width = width
        narrow, wide = 0 < width < NARROW, width >= WIDE
        columns = layout_columns(width, show_host=self.show_host)
        if not force and (narrow, wide, columns) == (self.narrow, self.wide, self.columns):
            return False
        self.narrow, self.wide, self.columns = narrow, wide, columns
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        self._widths = widths if len(widths) == len(columns) else tuple(self._label_width(n) for n in columns)
        for name, size in zip(columns, self._widths, strict=True):
            table.add_column(self._label(name), key=name, width=size)
        self._rendered = None
        self._cell_cache.clear()
        return True

    def _label(self, name: str) -> str | Text:
        if name == self.sort_column:
            return Text.assemble(name, ("▼" if self.sort_reverse else "▲", "bold"))
        return name

    def _label_width(self, name: str) -> int:
        return len(name) + (name == self.sort_column)  # the sort arrow

    def _measure(self, cells: list[list[Text]]) -> tuple[int, ...]:
        """The width each column needs: its header's or its widest cell's."""
        return tuple(
            max([self._label_width(name), *(row[i].cell_len for row in cells)])
            for i, name in enumerate(self.columns)
        )

    def _columns(self) -> tuple[str, ...]:
        return self.columns

    def _style(self, variable: str | None, bold: bool = False) -> str:
        color = self.app.theme_variables.get(variable or "", "") if variable else ""
        style = color if color.startswith("#") else ""
        if not variable:
            style = "dim"
        return f"bold {style}".strip() if bold else style

    # ------------------------------------------------------------------------ scanning (worker)
    def scan_store(self, cancelled: Callable[[], bool]) -> RunsScanned:
        return RunsScanned(self.tracker.scan(cancelled=cancelled))

    @on(RunsScanned)
    def _on_scanned(self, message: RunsScanned) -> None:
        self.scan_applied()
        self.rows = message.rows
        show_host = any(r.remote and r.live for r in self.rows)  # where it runs, when that is elsewhere
        if show_host != self.show_host:
            self.show_host = show_host
            self._set_columns(self._width or self.size.width, force=True)
        self._render_rows()
        self._sync_bindings()

    def on_unmount(self) -> None:
        self.tracker.flush()  # the next console starts from here (engine.runs.summary)

    # ------------------------------------------------------------------------ rendering
    def visible_rows(self) -> list[RunRow]:
        """The rows that pass the filter, in the table's order (sorted when a column is chosen)."""
        rows = [r for r in self.rows if r.matches(self.filter_text)]
        if self.sort_column is not None and self.sort_column in COLUMN_BY_NAME:
            rows = sort_rows(rows, self.sort_column, self.sort_reverse, self.canvas.clock())
        return rows

    def _no_runs(self) -> Content:
        return Content.assemble(
            ("No runs yet.", "bold"), "  Press n to start one, or run `canvas train` in a shell."
        )

    def _render_rows(self, force: bool = False) -> None:
        """Show the visible rows; a cell is written only when it changed (nothing when none did)."""
        if force:
            self._rendered = None
            self._cell_cache.clear()
        table = self.query_one("#runs-table", DataTable)
        rows = self.visible_rows()
        now = self.canvas.clock()
        drawn = [(row.id, self._row_cells(row, now)) for row in rows]
        cells = [(run_id, row_cells) for run_id, (row_cells, _) in drawn]
        shown = [(run_id, signature) for run_id, (_, signature) in drawn]
        widths = self._measure([row_cells for _, row_cells in cells])
        if widths != self._widths:  # new columns of the measured widths, then every row again
            self._set_columns(self._width or self.size.width, force=True, widths=widths)
            self._rendered = None
            drawn = [(row.id, self._row_cells(row, now)) for row in rows]
            cells = [(run_id, row_cells) for run_id, (row_cells, _) in drawn]
        if shown != self._rendered:
            previous, self._rendered = self._rendered, shown
            keys = list(self.columns)
            if previous is not None and [k for k, _ in previous] == [k for k, _ in shown]:
                for (run_id, old), (_, new), (_, row_cells) in zip(previous, shown, cells, strict=True):
                    for i, (a, b) in enumerate(zip(old, new, strict=True)):
                        if a != b:
                            table.update_cell(run_id, keys[i], row_cells[i])
            else:
                selected = self.selected_id()
                with self.app.batch_update():
                    table.clear()
                    for run_id, row_cells in cells:
                        table.add_row(*row_cells, key=run_id)
                    if selected is not None and selected in {r.id for r in rows}:
                        table.move_cursor(row=table.get_row_index(selected), animate=False)
        self._show_empty(rows)

    def _show_empty(self, rows: list[RunRow]) -> None:
        """The line shown instead of the table when it is empty, and the subtitle; a widget is
        touched only when what it says changed (an update costs a layout of the screen)."""
        if not self.scans:
            return  # still "Scanning N runs…"
        if not self.rows:
            state: tuple = ("none",)
        elif not rows:
            state = ("filtered", self.filter_text)
        else:
            state = ("rows",)
        if state != self._empty_state:
            self._empty_state = state
            empty = self.query_one("#runs-empty", Static)
            if state[0] == "none":
                empty.update(self._no_runs())
            elif state[0] == "filtered":
                empty.update(
                    Content.assemble(
                        "No run matches the filter ", (repr(self.filter_text), "bold"), ". esc clears it."
                    )
                )
            else:
                empty.update(Content(""))
            empty.display = not rows
        count = f"{len(rows)} of {len(self.rows)}" if self.filter_text else str(len(self.rows))
        live = sum(r.live for r in self.rows)
        sub_title = f"Runs · {count} · {live} live"
        if sub_title != self.sub_title:
            self.sub_title = sub_title

    def _row_cells(self, row: RunRow, now: float) -> tuple[list[Text], tuple]:
        """The row's cells and what they show (text and style, to tell a change), reused while the
        row and its time-dependent texts are unchanged."""
        clocks = (fmt_age(row.activity(now)), fmt_duration(row.runtime(now)), fmt_age(row.age(now)))
        cached = self._cell_cache.get(row.id)
        if cached is not None and (cached[0] is row or cached[0] == row) and cached[1] == clocks:
            return cached[2], cached[3]
        cells = self._cells(row, now, clocks)
        signature = tuple((c.plain, str(c.style)) for c in cells)
        self._cell_cache[row.id] = (row, clocks, cells, signature)
        return cells, signature

    def _cells(self, row: RunRow, now: float, clocks: tuple[str, str, str] | None = None) -> list[Text]:
        active, runtime, age = clocks or (
            fmt_age(row.activity(now)),
            fmt_duration(row.runtime(now)),
            fmt_age(row.age(now)),
        )
        short = short_hash(row.id) or row.id  # the id's random end: any command takes it
        status = row.status + ("?" if not row.verified else "")
        spark = NARROW_SPARK if self.narrow else SPARK_WIDTH
        cells = {
            "id": lambda: Text(short, style="dim"),
            "name": lambda: (
                Text("● " if row.id in self.marked else "", style="bold")
                + Text(clean_text(row.name[:24] + "…" if self.narrow and len(row.name) > 25 else row.name))
            ),
            "kind": lambda: Text(clean_text(row.kind)),
            "model": lambda: Text(clip(clean_text(row.model()), MODEL_WIDTH)),
            "status": lambda: Text(status, style=self._style(STATUS_COLOR.get(row.status), bold=True)),
            "host": lambda: Text(clip(clean_text(row.host), 16), style="" if row.remote else "dim"),
            "step": lambda: Text(fmt_step(row.step, row.total_steps), justify="right"),
            "loss": lambda: Text(fmt_loss(row.loss), justify="right"),
            "val": lambda: Text(fmt_loss(row.last_val), justify="right"),
            "best": lambda: Text(fmt_loss(row.best_val), justify="right"),
            "curve": lambda: Text(
                sparkline(row.spark, spark).ljust(spark),
                style=self._style("plot-train") or self._style("primary"),
            ),
            "tok/s": lambda: Text(fmt_si(row.tokens_per_s), justify="right"),
            "tokens": lambda: Text(fmt_si(row.tokens), justify="right"),
            "active": lambda: Text(active, justify="right"),
            "runtime": lambda: Text(runtime, justify="right"),
            "age": lambda: Text(age, justify="right"),
            "tags": lambda: Text(clip(clean_text(" ".join(row.tags)), TAGS_WIDTH), style="italic"),
        }
        return [cells[name]() for name in self._columns()]

    # ------------------------------------------------------------------------ sorting
    def sort_by(self, column: str | None, reverse: bool = False) -> None:
        """Sort the table by ``column`` (None: newest first), ``reverse`` for descending."""
        self.sort_column, self.sort_reverse = column, reverse
        self._set_columns(self._width or self.size.width, force=True)
        self._render_rows(force=True)
        if column is not None:
            arrow = "descending" if reverse else "ascending"
            self.notify(f"Sorted by {column}, {arrow}.", timeout=2, markup=False)

    def _step_sort(self, delta: int) -> None:
        names = list(self.columns)
        if self.sort_column in names:
            at = names.index(self.sort_column) + delta
            self.sort_by(names[at] if 0 <= at < len(names) else None, self.sort_reverse)
        else:
            self.sort_by(names[0] if delta > 0 else names[-1], self.sort_reverse)

    def action_sort_next(self) -> None:
        self._step_sort(+1)

    def action_sort_previous(self) -> None:
        self._step_sort(-1)

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_column or "age", not self.sort_reverse)

    @on(DataTable.HeaderSelected, "#runs-table")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column == self.sort_column:
            self.sort_by(column, not self.sort_reverse)
        else:
            self.sort_by(column)

    # ------------------------------------------------------------------------ cursor
    def action_cursor_top(self) -> None:
        self.query_one("#runs-table", DataTable).action_scroll_top()

    def action_cursor_bottom(self) -> None:
        self.query_one("#runs-table", DataTable).action_scroll_bottom()

    def action_cursor_down(self) -> None:
        self.query_one("#runs-table", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#runs-table", DataTable).action_cursor_up()

    # ------------------------------------------------------------------------ selection
    def selected_id(self) -> str | None:
        return cursor_key(self.query_one("#runs-table", DataTable))

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

    # -- marks, compare, and the actions the selected run's state allows (part E, issue 15)
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Stop / checkpoint only a live run, resume only a stopped, crashed or failed one (the
        footer and the palette follow the selected row); compare once two runs are marked."""
        if action in ("stop_run", "checkpoint_run", "resume_run"):
            row = self.selected_row()
            if row is None:
                return False
            if action == "resume_run":
                return row.status in ("stopped", "crashed", "failed")
            return row.status in ("running", "starting")
        if action == "compare":
            return len(self.marked) >= 2
        return True

    def _sync_bindings(self) -> None:
        row = self.selected_row()
        bound = (row.id, row.status) if row is not None else (None, None)
        if bound != self._bound:
            self._bound = bound
            self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#runs-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._sync_bindings()

    def action_toggle_mark(self) -> None:
        row = self._need_row()
        if row is None:
            return
        if row.id in self.marked:
            self.marked.remove(row.id)
        else:
            self.marked.append(row.id)
        self._cell_cache.pop(row.id, None)  # its name cell shows the mark
        self._render_rows()
        self.refresh_bindings()  # "v Compare" shows in the footer from two marked runs

    def action_compare(self) -> None:
        paths = {r.id: r.path for r in self.rows}
        marked = [paths[i] for i in self.marked if i in paths]
        if len(marked) < 2:
            self.notify("Mark two runs or more with space first.", severity="warning", markup=False)
            return
        from canvas_tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(marked))

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
        """Chat with the selected run's model. An eval or serve run holds no model of its own, so
        the picker opens instead of a worker that can only fail to load it."""
        row = self._need_row()
        if row is None:
            return
        if row.kind in TALKABLE_KINDS:
            self.canvas.talk_to_run(row.path)
            return
        self.notify(
            f"{row.name} is {'an' if row.kind[:1] in 'aeiou' else 'a'} {row.kind} run and holds no "
            "model of its own: pick the models to talk to.",
            timeout=4,
            markup=False,
        )
        self.canvas.open_chat([])

    def action_edit_notes(self) -> None:
        """Open the notes and tags editor of the selected run; the list shows them once saved."""
        row = self._need_row()
        if row is None:
            return
        from canvas_tui.screens.notes import NotesScreen

        def saved(notes: object) -> None:
            if notes is not None:
                self.notify(f"Saved the notes of {row.name}.", timeout=2, markup=False)
                self.scan()

        self.app.push_screen(NotesScreen(row.path, row.name), saved)

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
