"""The per-sample browser of one evaluation: prompt, reference and each model's output side by side.

The table lists the samples of ``samples.jsonl`` with two chosen models' scores on one metric and
their difference (B − A); ``s`` sorts by it (largest first, smallest first) or by index, ``1`` and
``2`` pick models A and B, ``m`` the metric. The highlighted sample is shown below the table: its
prompt, its reference, and every model's output with its per-sample scores. Prompts, references and
outputs are untrusted text, drawn literally (``Content``, never markup).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from canvas_tui import actions
from canvas_tui.eval_model import (
    SAMPLE_METRICS,
    SAMPLE_SORTS,
    SAMPLES,
    SampleRow,
    SampleView,
    read_samples,
    sample_labels,
    sample_rows,
)
from canvas_tui.fmt import clean_text, clip
from canvas_tui.screens.base import CanvasScreen
from canvas_tui.widgets.chat_column import literal
from canvas_tui.widgets.tables import cursor_key

SORT_TITLES = {"diff-desc": "B − A ▼", "diff-asc": "B − A ▲", "index": "#"}
#: Short names of the per-sample scores (ROUGE in 0..1, chrF and BLEU in 0..100).
SCORE_TITLES = {
    "rouge1": "R-1",
    "rouge2": "R-2",
    "rougeL": "R-L",
    "rougeLsum": "R-Lsum",
    "chrf": "chrF",
    "bleu": "BLEU",
}


class SamplesLoaded(Message):
    def __init__(self, samples: list[SampleView], error: str = "") -> None:
        super().__init__()
        self.samples = samples
        self.error = error


def fmt_score(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def fmt_diff(v: float | None) -> str:
    return "-" if v is None else f"{v:+.3f}"


class EvalSamplesScreen(CanvasScreen):
    SCOPE = "eval_samples"
    BINDINGS = actions.bindings("eval_samples")
    AUTO_FOCUS = "#samples-table"
    DEFAULT_CSS = """
    EvalSamplesScreen #samples-bar { height: auto; padding: 0 1; background: $boost; }
    EvalSamplesScreen #samples-table { height: 2fr; min-height: 4; }
    EvalSamplesScreen #samples-detail { height: 3fr; border-top: solid $primary 30%; }
    EvalSamplesScreen .sample-text { height: auto; padding: 0 1; }
    EvalSamplesScreen #sample-outputs { height: auto; }
    EvalSamplesScreen .sample-output { width: 1fr; height: auto; padding: 0 1;
        border-left: solid $primary 20%; }
    """

    def __init__(
        self, eval_path: str | Path, labels: list[str], *, first: str | None = None, name: str = ""
    ) -> None:
        super().__init__()
        self.eval_path = Path(eval_path)
        self.preferred = list(labels)
        self.first = first
        self.eval_name = name or self.eval_path.name
        self.samples: list[SampleView] = []
        self.labels: list[str] = []
        self.a = ""
        self.b = ""
        self.metric = "rougeL"
        self.sort = SAMPLE_SORTS[0]
        self.loaded = False
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Content(""), id="samples-bar", markup=False)
        yield DataTable(id="samples-table", cursor_type="row", zebra_stripes=True, show_row_labels=False)
        with VerticalScroll(id="samples-detail"):
            yield Static(Content(""), id="sample-prompt", classes="sample-text", markup=False)
            yield Static(Content(""), id="sample-reference", classes="sample-text", markup=False)
            yield Horizontal(id="sample-outputs")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Samples · {clean_text(self.eval_name)}"
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-samples")
    def _load(self) -> None:
        path = self.eval_path / SAMPLES
        if not path.is_file():
            self.post_message(SamplesLoaded([], f"{path} does not exist: this evaluation saved no samples."))
            return
        try:
            samples = read_samples(path)
        except (OSError, ValueError) as exc:
            self.post_message(SamplesLoaded([], f"cannot read the samples: {exc}"))
            return
        self.post_message(SamplesLoaded(samples))

    @on(SamplesLoaded)
    async def _loaded(self, message: SamplesLoaded) -> None:
        self.samples = message.samples
        self.error = message.error
        self.labels = sample_labels(self.samples, self.preferred)
        if self.labels:
            self.a = self.first if self.first in self.labels else self.labels[0]
            others = [label for label in self.labels if label != self.a]
            self.b = others[0] if others else self.a
        present = {m for s in self.samples for per in s.scores.values() for m in per}
        metrics = [m for m in SAMPLE_METRICS if m in present] or list(SAMPLE_METRICS)
        self.metric = metrics[0]
        outputs = self.query_one("#sample-outputs", Horizontal)
        await outputs.remove_children()
        await outputs.mount_all(
            [Static(Content(""), classes="sample-output", markup=False) for _ in self.labels]
        )
        self.loaded = True
        self._redraw()

    # ------------------------------------------------------------------------ rendering
    def metrics(self) -> list[str]:
        present = {m for s in self.samples for per in s.scores.values() for m in per}
        return [m for m in SAMPLE_METRICS if m in present] or list(SAMPLE_METRICS)

    def rows(self) -> list[SampleRow]:
        return sample_rows(self.samples, self.a, self.b, self.metric, self.sort)

    def _redraw(self) -> None:
        table = self.query_one("#samples-table", DataTable)
        selected = self.selected_index()
        rows = self.rows()
        width = self.size.width
        prompt_width = max(10, width - 40)
        with self.app.batch_update():
            table.clear(columns=True)
            table.add_column(Text("#"), key="index")
            table.add_column(Text("task"), key="task")
            table.add_column(Text(f"A {self.metric}"), key="a")
            table.add_column(Text(f"B {self.metric}"), key="b")
            table.add_column(
                Text(
                    "B − A" + (" ▼" if self.sort == "diff-desc" else " ▲" if self.sort == "diff-asc" else "")
                ),
                key="diff",
            )
            table.add_column(Text("prompt"), key="prompt")
            for row in rows:
                s = row.sample
                table.add_row(
                    Text(str(s.index), justify="right"),
                    Text(clip(clean_text(s.task), 10)),
                    Text(fmt_score(row.a), justify="right"),
                    Text(fmt_score(row.b), justify="right"),
                    Text(fmt_diff(row.difference), justify="right", style="bold"),
                    Text(clip(clean_text(s.prompt.replace("\n", " ⏎ ")), prompt_width)),
                    key=str(s.index),
                )
            if selected is not None and str(selected) in {str(r.sample.index) for r in rows}:
                table.move_cursor(row=table.get_row_index(str(selected)), animate=False)
        bar = self.query_one("#samples-bar", Static)
        if self.error:
            bar.update(Content.styled(self.error, "$error"))
        else:
            bar.update(
                Content.assemble(
                    ("A ", "bold"),
                    clip(clean_text(self.a), 24),
                    ("  B ", "bold"),
                    clip(clean_text(self.b), 24),
                    ("  metric ", "bold"),
                    self.metric,
                    ("  sort ", "$text-muted"),
                    (SORT_TITLES[self.sort], "$text-muted"),
                    (f" · {len(rows)} samples", "$text-muted"),
                )
            )
        self._show_sample()

    def _show_sample(self) -> None:
        sample = self.selected_sample()
        prompt = self.query_one("#sample-prompt", Static)
        reference = self.query_one("#sample-reference", Static)
        outputs = list(self.query(".sample-output").results(Static))
        if sample is None:
            prompt.update(Content(""))
            reference.update(Content(""))
            for widget in outputs:
                widget.update(Content(""))
            return
        prompt.update(Content.assemble((f"prompt #{sample.index}", "bold"), "\n", literal(sample.prompt)))
        reference.update(Content.assemble(("reference", "bold"), "\n", literal(sample.reference)))
        for label, widget in zip(self.labels, outputs, strict=False):
            scores = sample.scores.get(label, {})
            score_text = " · ".join(
                f"{SCORE_TITLES.get(m, m)} {scores[m]:.{1 if m in ('chrf', 'bleu') else 2}f}"
                for m in self.metrics()
                if m in scores
            )
            role = " (A)" if label == self.a else (" (B)" if label == self.b else "")
            widget.update(
                Content.assemble(
                    (clean_text(label) + role, "bold"),
                    "\n",
                    (score_text, "$text-muted"),
                    "\n",
                    literal(sample.outputs.get(label, "(no output)")),
                )
            )

    # ------------------------------------------------------------------------ selection
    def selected_index(self) -> int | None:
        key = cursor_key(self.query_one("#samples-table", DataTable))
        return int(key) if key is not None else None

    def selected_sample(self) -> SampleView | None:
        index = self.selected_index()
        return next((s for s in self.samples if s.index == index), None)

    @on(DataTable.RowHighlighted, "#samples-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_sample()

    # ------------------------------------------------------------------------ actions
    def _next(self, values: list[str], current: str) -> str:
        if not values:
            return current
        return values[(values.index(current) + 1) % len(values)] if current in values else values[0]

    def action_cycle_a(self) -> None:
        self.a = self._next(self.labels, self.a)
        self._redraw()

    def action_cycle_b(self) -> None:
        self.b = self._next(self.labels, self.b)
        self._redraw()

    def action_cycle_metric(self) -> None:
        self.metric = self._next(self.metrics(), self.metric)
        self._redraw()

    def action_cycle_sort(self) -> None:
        self.sort = self._next(list(SAMPLE_SORTS), self.sort)
        self._redraw()

    def action_back(self) -> None:
        self.app.pop_screen()
