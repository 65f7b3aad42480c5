"""The Evaluation screen's side panes: arena ratings, running evaluations, the selected model's details.

Each is a ``Static`` drawn from :class:`~textual.content.Content` built here; every name, label,
signature, verdict and message is untrusted text and goes in as plain text, never as markup.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from canvas_tui.eval_model import (
    ArenaView,
    EvalResultsView,
    EvalRunState,
    ModelRow,
    fmt_rating,
    fmt_value,
)
from canvas_tui.fmt import clean_text, clip
from canvas_tui.widgets.chat_column import literal

#: How many verdict lines the details pane shows (the rest: in results.json).
MAX_VERDICTS = 4


class ArenaPane(Static):
    """Bradley–Terry ratings, best first: model, rating [95% interval], battles."""

    DEFAULT_CSS = """
    ArenaPane { height: auto; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(Content(""), markup=False, **kwargs)
        self.view: ArenaView | None = None

    def show(self, view: ArenaView | None, width: int = 34) -> None:
        self.view = view
        self.update(arena_content(view, width))


def arena_content(view: ArenaView | None, width: int = 34) -> Content:
    if view is None:
        return Content.assemble(("Arena", "bold"), "\n", ("fitting ratings…", "$text-muted"))
    if not view.rows:
        return Content.assemble(("Arena", "bold"), "\n", (view.note, "$text-muted"))
    lines: list[Content] = [
        Content.assemble(
            ("Arena", "bold"),
            (f" · Bradley–Terry · {view.battles} battle{'' if view.battles == 1 else 's'}", "$text-muted"),
        )
    ]
    name_width = max(6, min(24, width - 26))
    for rank, row in enumerate(view.rows, 1):
        battles = "" if row.battles is None else f" ({row.battles})"
        lines.append(
            Content.assemble(
                f"{rank}. ",
                (clip(clean_text(row.model), name_width).ljust(name_width), "bold" if rank == 1 else ""),
                " ",
                fmt_rating(row),
                (battles, "$text-muted"),
            )
        )
    return Content("\n").join(lines)


class LivePane(Static):
    """Evaluations without results yet: running ones with their progress, ended ones with why."""

    DEFAULT_CSS = """
    LivePane { height: auto; max-height: 4; padding: 0 1; background: $boost; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(Content(""), markup=False, **kwargs)

    def show(self, states: list[EvalRunState], width: int = 80, errors: tuple[str, ...] = ()) -> None:
        shown = [s for s in states if s.live] + [s for s in states if not s.live][:2]
        self.display = bool(shown or errors)
        lines = [Content.styled(clip(clean_text(e), max(10, width - 2)), "$error") for e in errors[:2]]
        for s in shown[: max(0, 4 - len(lines))]:
            state_style = (
                "$success" if s.live else ("$error" if s.state in ("failed", "crashed") else "$warning")
            )
            text = clip(clean_text(s.progress_text()), max(10, width - len(s.name) - 16))
            lines.append(
                Content.assemble(
                    ("⟳ " if s.live else "· ", state_style),
                    (clean_text(s.name), "bold"),
                    " ",
                    (s.state, state_style),
                    "  ",
                    text,
                )
            )
        self.update(Content("\n").join(lines))


def details_content(row: ModelRow | None, view: EvalResultsView | None, width: int = 80) -> Content:
    """The selected model: what was evaluated, the settings, the sacrebleu signatures, the verdicts."""
    if row is None or view is None:
        return Content("")
    w = max(20, width - 2)
    what = [row.kind or "model"]
    if row.adapter is False:
        what.append("adapter off")
    if row.run_id:
        what.append(f"run {row.run_id}")
    elif row.model != row.label:
        what.append(row.model)
    head = Content.assemble(
        (clean_text(row.title()), "bold"),
        ("  " + clip(clean_text(" · ".join(what)), max(8, w - len(row.title()) - 2)), "$text-muted"),
    )
    lines = [head]
    verdicts = [c for c in view.comparisons if c.verdict]
    for c in verdicts[:MAX_VERDICTS]:
        lines.append(Content.assemble(("▸ ", "$accent"), clip(literal(c.verdict).replace("\n", " "), w - 2)))
    if len(verdicts) > MAX_VERDICTS:
        more = f"… {len(verdicts) - MAX_VERDICTS} more comparisons in results.json"
        lines.append(Content.styled(more, "$text-muted"))
    for name, signature in (("BLEU", row.bleu_signature), ("chrF", row.chrf_signature)):
        if signature:
            lines.append(
                Content.assemble((f"{name} ", "bold"), clip(clean_text(signature), w - len(name) - 1))
            )
    eval_line = f"eval {view.eval_name} ({view.eval_id[:15]}) · {view.settings_text()}"
    lines.append(Content.styled(clip(clean_text(eval_line), w), "$text-muted"))
    facts = []
    if row.tokenizer:
        facts.append(f"tokenizer {row.tokenizer}")
    if row.window:
        facts.append(f"window {row.window}")
    if row.documents is not None:
        facts.append(f"{row.documents} documents")
    tps = row.get("tokens_per_s")
    if tps is not None:
        facts.append(f"{fmt_value(tps.value, 0)} tok/s")
    if facts:
        lines.append(Content(clip(clean_text(" · ".join(facts)), w)))
    return Content("\n").join(lines)
