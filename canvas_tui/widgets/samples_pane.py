"""The samples pane: what the model wrote at the latest ``sample_every`` step, prompt by prompt.

Shown only once a run has ``sample`` events (the dashboard adds its ``-samples`` class), so a run
without samples keeps the layout it always had. Prompts and model text are untrusted: they are
laid out as :class:`~textual.content.Content` pieces, never parsed as markup, so ``[bold]`` or
``[/INST]`` written by a model shows as those characters.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from engine.runs.events import Sample
from engine.runs.format import fmt_step

#: Characters of a prompt shown before it is cut (the model's text is shown whole).
PROMPT_CHARS = 160


#: Bidirectional formatting characters (U+202E and friends: they could reorder what a reader sees).
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _printable(text: str) -> str:
    """Text as it can be drawn: newlines and tabs kept; other control characters (ESC of an ANSI
    sequence, C1 controls) and bidi overrides shown as ``�``, one for one."""
    return "".join(
        ch
        if ch in "\n\t" or (ch >= " " and ch != "\x7f" and not "\x80" <= ch < "\xa0" and ch not in BIDI)
        else "\ufffd"
        for ch in text
    )


def sample_content(samples: Sequence[Sample]) -> Content:
    """The pane's body for ``samples`` (one step's): each prompt, muted, then what the model wrote."""
    if not samples:
        return Content("")
    parts: list[Content] = []
    for i, s in enumerate(samples):
        prompt = _printable(s.prompt or "")
        if len(prompt) > PROMPT_CHARS:
            prompt = "…" + prompt[-PROMPT_CHARS:]
        if i:
            parts.append(Content("\n\n"))
        parts.append(Content.styled(prompt, "$text-muted italic"))
        parts.append(Content.styled(_printable(s.text or "") or "(nothing: end of text at once)", "bold"))
    return Content("").join(parts)


class SamplesPane(VerticalScroll):
    DEFAULT_CSS = """
    SamplesPane {
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        background: $surface;
        height: 1fr;
        padding: 0 1;
    }
    SamplesPane > Static { width: 1fr; height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Samples"
        self.step: int | None = None
        self.samples: list[Sample] = []

    def compose(self) -> ComposeResult:
        yield Static(Content(""), markup=False, id="samples-text")

    @property
    def text(self) -> str:
        """The plain text shown (for tests and screen readers)."""
        return str(self.query_one("#samples-text", Static).content)

    def show(self, samples: Sequence[Sample], total_steps: int | None = None) -> None:
        """Show one step's samples (the latest); the title says which step."""
        self.samples = list(samples)
        self.step = samples[0].step if samples else None
        where = f" @ step {fmt_step(self.step, total_steps)}" if self.step is not None else ""
        self.border_title = f"Samples{where}"
        self.query_one("#samples-text", Static).update(sample_content(self.samples))
