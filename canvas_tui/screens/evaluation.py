"""The Evaluation screen: every evaluated model compared, the arena ratings, samples, new evaluations.

A thread worker scans the store's ``eval`` runs (:class:`canvas_tui.eval_model.EvalTracker`:
results.json parsed again only when it changed, live runs' events read incrementally) and fits the
arena ratings when ``battles.jsonl`` changed; the next scan is armed only after the previous one
was applied, and none runs while another screen covers this one (the loop of
:class:`canvas_tui.screens.scanning.ScanningScreen`, shared with the Runs screen).

The comparison table has one row per evaluated model (newest evaluation first) and one column per
metric some model has, each value with its 95% interval. ``s`` sorts by the next metric (best
first: lower perplexity and bits per byte, higher ROUGE/BLEU/chrF), ``r`` reverses, and a click on
a column header sorts by it. The selected model's settings, sacrebleu signatures and the
evaluation's verdicts show below the table; the arena ratings beside it (below it at 80 columns).
Enter opens the per-sample browser, ``n`` the launch form, ``a`` the Arena.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from canvas_tui import actions
from canvas_tui.eval_model import (
    METRIC_BY_KEY,
    ArenaView,
    EvalSnapshot,
    EvalTracker,
    MetricSpec,
    ModelRow,
    arena_view,
    best_keys,
    fmt_metric,
    present_metrics,
    sort_rows,
)
from canvas_tui.fmt import clean_text, clip
from canvas_tui.screens.scanning import ScanningScreen
from canvas_tui.widgets.eval_panes import ArenaPane, LivePane, details_content
from canvas_tui.widgets.tables import cursor_key

#: Below this width the arena ratings go under the table instead of beside it.
NARROW = 110
ARENA_WIDTH = 38
MODEL_WIDTH = 22


class EvalScanned(Message):
    """A fresh scan of the evaluation runs, and the arena ratings when they changed (else None)."""

    def __init__(self, snapshot: EvalSnapshot, arena: ArenaView | None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.arena = arena


class EvaluationScreen(ScanningScreen):
    SCAN_GROUP = "eval-scan"
    SCOPE = "evaluation"
    BINDINGS = actions.bindings("evaluation")
    AUTO_FOCUS = "#eval-table"
    DEFAULT_CSS = """
    EvaluationScreen #eval-body { height: 1fr; }
    EvaluationScreen #eval-left { width: 1fr; height: 100%; }
    EvaluationScreen #eval-table { height: 1fr; min-height: 4; }
    EvaluationScreen #eval-details { height: auto; max-height: 9; padding: 0 1;
        border-top: solid $primary 30%; }
    EvaluationScreen #eval-empty { height: auto; padding: 1 2; }
    EvaluationScreen #eval-arena { width: 38; height: 100%; border-left: solid $primary 30%; }
    EvaluationScreen.-narrow #eval-body { layout: vertical; }
    EvaluationScreen.-narrow #eval-left { height: 1fr; }
    EvaluationScreen.-narrow #eval-arena { width: 100%; height: auto; max-height: 6; border-left: none;
        border-top: solid $primary 30%; }
    EvaluationScreen.-narrow #eval-details { max-height: 6; }
    """

    def __init__(self, *, battles_path: Path | None = None) -> None:
        super().__init__()
        self.tracker = EvalTracker()
        self.battles_path = battles_path
        self.snapshot = EvalSnapshot((), ())
        self.arena: ArenaView | None = None
        self.sort_key: str | None = None
        self.sort_reverse = False
        self._columns: tuple[MetricSpec, ...] = ()
        self._battles_stamp: tuple[int, int] | str | None = "unset"

    def compose(self) -> ComposeResult:
        yield Header()
        yield LivePane(id="eval-live")
        with Horizontal(id="eval-body"):
            with Vertical(id="eval-left"):
                yield Static(Content(""), id="eval-empty", markup=False)
                yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True, show_row_labels=False)
                yield Static(Content(""), id="eval-details", markup=False)
            yield ArenaPane(id="eval-arena")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Evaluation"
        self.query_one(LivePane).display = False
        self.set_narrow(self.size.width, NARROW)
        self.query_one(ArenaPane).show(None)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw())
        self.scan()

    def on_resize(self, event) -> None:
        if self.set_narrow(event.size.width, NARROW):
            self._redraw()

    # ------------------------------------------------------------------------ scanning (worker)
    def scan_store(self, cancelled: Callable[[], bool]) -> EvalScanned:
        snapshot = self.tracker.scan(cancelled=cancelled)
        return EvalScanned(snapshot, self._fit_arena_if_changed())

    def _fit_arena_if_changed(self) -> ArenaView | None:
        path = self.battles_path
        if path is None:
            from engine.eval.arena import battles_path

            path = battles_path()
        stamp: tuple[int, int] | None = None
        if path is not None:
            try:
                st = Path(path).stat()
                stamp = (st.st_size, st.st_mtime_ns)
            except OSError:
                stamp = None
        if stamp == self._battles_stamp:
            return None
        self._battles_stamp = stamp
        try:
            return arena_view(path)
        except Exception as exc:  # a damaged battles file must not take the screen down
            return ArenaView(note=f"cannot fit ratings: {type(exc).__name__}: {exc}")

    @on(EvalScanned)
    def _on_scanned(self, message: EvalScanned) -> None:
        self.scan_applied()
        changed = message.snapshot.results != self.snapshot.results or self.scans == 1
        self.snapshot = message.snapshot
        if message.arena is not None:
            self.arena = message.arena
        self._redraw(table=changed)

    # ------------------------------------------------------------------------ rendering
    def rows(self) -> list[ModelRow]:
        """The table's rows in display order."""
        return sort_rows(self.snapshot.rows, self.sort_key, reverse=self.sort_reverse)

    def metric_columns(self) -> tuple[MetricSpec, ...]:
        return present_metrics(self.snapshot.rows)

    def _redraw(self, table: bool = True) -> None:
        """Everything from the current snapshot; the table only when ``table`` (a poll that found
        no new results leaves it alone, so its cursor and horizontal scroll stay put)."""
        rows = self.rows()
        if table:
            self._fill_table(rows)
        self._show_panes(rows)

    def _fill_table(self, rows: list[ModelRow]) -> None:
        table = self.query_one("#eval-table", DataTable)
        selected = self.selected_key()
        columns = self.metric_columns()
        with self.app.batch_update():
            self._columns = columns
            table.clear(columns=True)
            table.add_column(Text("model"), key="model")
            if not self.narrow:
                table.add_column(Text("eval"), key="eval")
            for m in columns:
                marker = ""
                if m.key == self.sort_key:
                    marker = " ▲" if self.sort_reverse else " ▼"
                table.add_column(
                    Text(f"{m.title} {m.arrow}{marker}", style="bold" if marker else ""), key=m.key
                )
            best = {m.key: best_keys(rows, m.key) for m in columns}
            for row in rows:
                cells = [Text(clip(clean_text(row.title()), MODEL_WIDTH))]
                if not self.narrow:
                    cells.append(Text(clip(clean_text(row.eval_name), 16), style="dim"))
                for m in columns:
                    value = row.get(m.key)
                    style = "bold" if row.key in best[m.key] else ""
                    cells.append(Text(fmt_metric(value), style=style, justify="right"))
                table.add_row(*cells, key=row.key)
            if selected is not None and selected in {r.key for r in rows}:
                table.move_cursor(row=table.get_row_index(selected), animate=False)

    def _show_panes(self, rows: list[ModelRow]) -> None:
        table = self.query_one("#eval-table", DataTable)
        empty = self.query_one("#eval-empty", Static)
        if not rows:
            empty.update(
                Content.assemble(
                    ("No evaluations yet.", "bold"),
                    "  Press n to evaluate models, or run `canvas eval RUN [RUN …]` in a shell.",
                )
            )
        empty.display = not rows
        table.display = bool(rows)
        self.query_one(LivePane).show(list(self.snapshot.others), self.size.width, self.snapshot.errors)
        if self.arena is not None:
            self.query_one(ArenaPane).show(
                self.arena, self.size.width - 2 if self.narrow else ARENA_WIDTH - 3
            )
        self._show_details()
        live = len(self.snapshot.live)
        sort = ""
        if self.sort_key:
            spec = METRIC_BY_KEY[self.sort_key]
            sort = f" · sorted by {spec.title} {'worst' if self.sort_reverse else 'best'} first"
        self.sub_title = (
            f"Evaluation · {len(rows)} model{'' if len(rows) == 1 else 's'} in "
            f"{len(self.snapshot.results)} eval{'' if len(self.snapshot.results) == 1 else 's'}"
            + (f" · {live} running" if live else "")
            + sort
        )

    def _show_details(self) -> None:
        row = self.selected_row()
        view = self.snapshot.view_for(row.eval_id) if row is not None else None
        details = self.query_one("#eval-details", Static)
        details.update(details_content(row, view, self.size.width - (0 if self.narrow else ARENA_WIDTH)))
        details.display = row is not None

    # ------------------------------------------------------------------------ selection
    def selected_key(self) -> str | None:
        return cursor_key(self.query_one("#eval-table", DataTable))

    def selected_row(self) -> ModelRow | None:
        key = self.selected_key()
        return next((r for r in self.snapshot.rows if r.key == key), None)

    @on(DataTable.RowHighlighted, "#eval-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_details()

    @on(DataTable.RowSelected, "#eval-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_samples()

    @on(DataTable.HeaderSelected, "#eval-table")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key in METRIC_BY_KEY:
            self.sort_by(key, reverse=not self.sort_reverse if key == self.sort_key else False)

    # ------------------------------------------------------------------------ actions
    def sort_by(self, key: str | None, reverse: bool = False) -> None:
        self.sort_key = key
        self.sort_reverse = reverse
        self._redraw()

    def action_sort_next(self) -> None:
        keys = [m.key for m in self.metric_columns()]
        if not keys:
            return
        if self.sort_key not in keys:
            self.sort_by(keys[0])
        else:
            i = keys.index(self.sort_key) + 1
            self.sort_by(keys[i] if i < len(keys) else None)

    def action_reverse_sort(self) -> None:
        if self.sort_key is None:
            keys = [m.key for m in self.metric_columns()]
            if not keys:
                return
            self.sort_key = keys[0]
        self.sort_by(self.sort_key, reverse=not self.sort_reverse)

    def action_open_samples(self) -> None:
        from canvas_tui.screens.eval_samples import EvalSamplesScreen

        row = self.selected_row()
        if row is None:
            self.notify("No evaluation selected.", severity="warning")
            return
        view = self.snapshot.view_for(row.eval_id)
        labels = [r.label for r in view.rows] if view is not None else [row.label]
        self.app.push_screen(EvalSamplesScreen(row.eval_path, labels, first=row.label, name=row.eval_name))

    def action_new_eval(self) -> None:
        from canvas_tui.screens.eval_launch import EvalLaunchScreen

        def launched(run_id: str | None) -> None:
            if run_id:
                self.notify(f"Evaluation {run_id} started.", title="Evaluation", markup=False)
                self.scan()

        self.app.push_screen(EvalLaunchScreen(), launched)

    def action_arena(self) -> None:
        """The blind arena on the selected evaluation's models (up to three), named as in its table."""
        from canvas_tui.chat_models import choice_for
        from canvas_tui.screens.arena import ArenaScreen

        row = self.selected_row()
        view = self.snapshot.view_for(row.eval_id) if row is not None else None
        choices = []
        seen = set()
        for r in view.rows if view is not None else ():
            ref = r.run_id or r.model
            key = (ref, r.checkpoint, r.adapter)
            if key in seen:
                continue
            seen.add(key)
            # The arena names models as results.json does, so ratings and table rows match.
            choices.append(replace(choice_for(ref, r.checkpoint, r.adapter is not False), label=r.label))
        if len(choices) < 2:
            self.notify(
                "The arena compares two or three models, and the selected evaluation has "
                f"{len(choices) or 'no'} model{'s' if len(choices) != 1 else ''}. Fix: select an evaluation "
                "of two or more models, or run canvas arena MODEL_A MODEL_B.",
                title="Arena",
                severity="warning",
                markup=False,
            )
            return
        self.app.push_screen(ArenaScreen(choices[:3]))

    def action_back(self) -> None:
        self.app.pop_screen()
