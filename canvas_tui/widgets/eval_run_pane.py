"""An evaluation run's dashboard pane: its progress while it runs, its results once it has them.

An ``eval`` run writes ``progress`` events (phase, done/total, unit, eta) and, at the end,
``results.json`` (engine/eval/results.py); it has no loss curves. The dashboard shows this pane in
place of the plots for such runs. ``results.json`` is read again only when its size or mtime
changed (a stat a second while the run is open), parsed by :func:`canvas_tui.eval_model.parse_results`
and shown as one line per model with every metric and its interval, then the comparisons' verdicts.
Model labels and verdicts are untrusted text: :class:`Content`, never markup.
"""

from __future__ import annotations

from pathlib import Path

from textual.content import Content

from canvas_tui.eval_model import (
    EvalResultsView,
    fmt_metric,
    load_results_json,
    parse_results,
    present_metrics,
)
from canvas_tui.fmt import bar, clean_text, clip, finite, fmt_duration
from canvas_tui.viewmodel import RunView
from canvas_tui.widgets.panes import Pane
from canvas_tui.widgets.quiet import update_pane

RESULTS = "results.json"
POLL_S = 1.0
#: Verdicts shown under the table (the Evaluation screen lists them all).
MAX_VERDICTS = 4


class EvalRunPane(Pane):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Evaluation", id=id)
        self.results: EvalResultsView | None = None
        self.error = ""
        self._stamp: tuple[int, int] | None = None
        self._args: tuple[Path, RunView, str | None] | None = None

    def on_resize(self) -> None:
        if self._args is not None:
            self.show(*self._args)

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self._poll)

    def _poll(self) -> None:
        """results.json may land after the last event: look (one stat) while the pane is shown."""
        if self._args is None or not self.display:
            return
        path = self._args[0] / RESULTS
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self.show(*self._args)

    def _load(self, run_path: Path) -> None:
        """(Re)read results.json when it changed; a broken file says why instead of crashing."""
        path = run_path / RESULTS
        try:
            st = path.stat()
        except OSError:
            self.results, self._stamp, self.error = None, None, ""
            return
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            data = load_results_json(path)
        except (OSError, ValueError) as exc:
            self.results, self.error = None, f"{path}: {exc}"
            return
        self.error = ""
        self.results = parse_results(data, eval_id=run_path.name, eval_name=run_path.name, path=str(path))

    def show(self, run_path: Path, view: RunView, state: str | None = None) -> None:
        self._args = (run_path, view, state)
        self._load(run_path)
        width = max(30, (self.content_size.width or 76))
        lines: list[Content] = []
        if self.results is not None and self.results.rows:
            self.border_title = "Evaluation results"
            lines += self._results_lines(self.results, width)
        else:
            self.border_title = "Evaluation"
            lines.append(self._progress_line(view, state, width))
        if self.error:
            lines.append(Content.styled(clip(clean_text(self.error), width), "$error"))
        update_pane(self, Content("\n").join(lines))

    @staticmethod
    def _progress_line(view: RunView, state: str | None, width: int) -> Content:
        p = view.progress
        if p is None:
            what = "waiting for the first progress report" if state in (None, "running", "starting") else ""
            return Content.styled(what or f"{state or 'ended'}: no results.json", "$text-muted")
        done, total = finite(p.done), finite(p.total)
        pct = 100.0 * done / total if done is not None and total else None
        count = "-" if done is None else f"{done:g}"
        if total is not None:
            count += f"/{total:g}"
        if p.unit:
            count += f" {clean_text(p.unit)}"
        eta = finite(p.eta)
        tail = count + (f" · eta {fmt_duration(eta)}" if eta is not None else "")
        phase = clip(clean_text(p.phase), 24)
        bar_width = max(0, min(40, width - len(phase) - len(tail) - 10))
        filled, empty = bar(pct, bar_width)
        return Content.assemble(
            (phase, "bold"),
            " ",
            (filled, "$accent"),
            (empty, "on $boost"),
            " ",
            ("" if pct is None else f"{pct:3.0f}% ", ""),
            (tail, "$text-muted"),
        )

    @staticmethod
    def _results_lines(results: EvalResultsView, width: int) -> list[Content]:
        specs = present_metrics(results.rows)
        label_w = min(24, max(len(clean_text(r.title())) for r in results.rows))
        cells = {(r.key, m.key): fmt_metric(r.get(m.key)) for r in results.rows for m in specs}
        col_w = {
            m.key: max(len(m.title) + 1, *(len(cells[(r.key, m.key)]) for r in results.rows)) for m in specs
        }
        shown = []
        used = label_w
        for m in specs:
            if used + 2 + col_w[m.key] > width:
                break
            shown.append(m)
            used += 2 + col_w[m.key]
        head: list[tuple[str, str] | str] = [("model".ljust(label_w), "$text-muted")]
        for m in shown:
            head += ["  ", (f"{m.title}{m.arrow}".rjust(col_w[m.key]), "bold $text-muted")]
        lines = [Content.assemble(*head)]
        for r in results.rows:
            parts: list[tuple[str, str] | str] = [
                (clip(clean_text(r.title()), label_w).ljust(label_w), "bold")
            ]
            for m in shown:
                parts += ["  ", cells[(r.key, m.key)].rjust(col_w[m.key])]
            lines.append(Content.assemble(*parts))
        if len(shown) < len(specs):
            rest = ", ".join(m.title for m in specs[len(shown) :])
            lines.append(
                Content.styled(clip(f"more on the Evaluation screen (E): {rest}", width), "$text-muted")
            )
        for c in [c for c in results.comparisons if c.verdict][:MAX_VERDICTS]:
            lines.append(Content.assemble(("▸ ", "$accent"), clip(clean_text(c.verdict), width - 2)))
        settings = results.settings_text()
        if settings:
            lines.append(Content.styled(clip(clean_text(settings), width), "$text-muted"))
        return lines
