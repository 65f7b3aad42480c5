"""The dashboard's top lines: who the run is, its true status, progress with ETA, latest numbers.

A pre-training run shows its parameter count; a fine-tune shows what it trains instead: its base,
the quantisation, the LoRA adapters' share of the parameters and the chat template, from its
``run_info`` (or, before the engine wrote one, from the config in ``run.json``).
"""

from __future__ import annotations

import shlex

from textual.content import Content
from textual.widgets import Static

from canvas_tui.fmt import clean_text, clip, fmt_duration, fmt_loss, fmt_num, fmt_si, fmt_step, fmt_trainable
from canvas_tui.viewmodel import RunView
from canvas_tui.widgets.quiet import update_pane
from engine.runs.events import RunInfo
from engine.runs.meta import RunKind, RunMeta
from engine.runs.status import RunStatus

STATUS_STYLE = {
    "running": "bold $success",
    "starting": "bold $accent",
    "created": "$text-muted",
    "finished": "bold $primary",
    "stopped": "bold $warning",
    "failed": "bold $error",
    "crashed": "bold $error",
    "queued": "bold $accent",
    "unresponsive": "bold $warning",
    "unknown": "$text-muted",
}


def status_content(state: str, verified: bool = True) -> Content:
    return Content.styled(state + ("?" if not verified else ""), STATUS_STYLE.get(state, ""))


def progress_bar(fraction: float | None, width: int) -> Content:
    if fraction is None or width <= 0:
        return Content.styled("─" * max(0, width), "$text-muted")
    done = round(fraction * width)
    return Content.assemble(("━" * done, "$primary"), ("─" * (width - done), "$text-muted"))


class RunHeader(Static):
    DEFAULT_CSS = """
    RunHeader { height: auto; padding: 0 1; background: $panel; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Content(""), id=id, markup=False)
        self.meta = RunMeta()
        self.status: RunStatus | None = None
        self.view: RunView | None = None
        self.stopping = False

    def on_resize(self) -> None:
        self.update(self._content())

    @property
    def text(self) -> str:
        return str(self.content)

    def show(
        self,
        meta: RunMeta | None = None,
        status: RunStatus | None = None,
        view: RunView | None = None,
        stopping: bool | None = None,
    ) -> None:
        if stopping is not None:
            self.stopping = stopping
        if meta is not None:
            self.meta = meta
        if status is not None:
            self.status = status
        if view is not None:
            self.view = view
        update_pane(self, self._content())  # 4 Hz on a live run: relayout only when the shape changes

    def _content(self) -> Content:
        m, v = self.meta, self.view or RunView()
        state = self.status.state if self.status else (m.status or "unknown")
        verified = self.status.verified if self.status else True
        line1 = Content.assemble(
            (clean_text(m.name or "?"), "bold"),
            "  ",
            (clean_text(m.id), "$text-muted"),
            "  ",
            (clean_text(str(m.kind)), "$text-muted"),
            "  ",
            status_content(state, verified),
        )
        stopping = self.stopping and state in ("running", "starting")
        if stopping:  # asked to stop: it finishes its step and checkpoints first
            line1 = line1 + Content.assemble("  ", ("stopping…", "bold $warning"))
        if self.status and self.status.remote and self.status.is_live and self.status.host:  # runs elsewhere
            line1 = line1 + Content.assemble(("  on ", "$text-muted"), (clean_text(self.status.host), "bold"))
        if self.status and self.status.message and (state not in ("running",) or not self.status.responsive):
            line1 = line1 + Content.styled(": " + clean_text(self.status.message), "$text-muted")
        total = v.total_steps or m.total_steps
        fraction = (
            v.fraction_done()
            if v.total_steps
            else ((v.step or 0) / total if isinstance(total, int) and total else None)
        )
        bar_width = max(8, min(40, self.size.width - 62)) if self.size.width else 20
        eta = v.eta_seconds() if state in ("running", "starting") else None
        metric = v.last_metric
        line2 = Content.assemble(
            ("step ", "$text-muted"),
            fmt_step(v.step, total),
            " ",
            progress_bar(fraction, bar_width),
            " ",
            "-" if fraction is None else f"{100 * fraction:.1f}%",
            ("  ETA ", "$text-muted"),
            fmt_duration(eta) if eta is not None else "-",
            ("  tok/s ", "$text-muted"),
            fmt_si(metric.tokens_per_s if metric else None),
        )
        best = v.best_val
        nonfinite = ""
        if v.nonfinite:
            step, kind = v.nonfinite[-1]
            nonfinite = f"  loss {kind} at step {step} ({len(v.nonfinite)}x)"
        info = v.run_info
        finetune = is_finetune(m, info)
        line3 = Content.assemble(
            ("loss ", "$text-muted"),
            fmt_loss(metric.loss if metric else None),
            ("  val ", "$text-muted"),
            fmt_loss(v.last_eval.val_loss if v.last_eval else None),
            ("  best ", "$text-muted"),
            "-" if best is None else f"{fmt_loss(best[1])} @ {best[0]}",
            ("  lr ", "$text-muted"),
            fmt_num(metric.lr if metric else None, 3),
            ("" if finetune else "  params ", "$text-muted"),
            "" if finetune else fmt_si(info.params if info else None),
            ("  ", ""),
            clean_text((info.precision if info else None) or ""),
            " ",
            clean_text((info.device if info else None) or ""),
            (nonfinite, "bold $error"),
        )
        progress = v.progress
        lines = [line1, line2, line3]
        if state in RESUMABLE and self.status is not None:
            lines.append(resume_hint(m))
        if finetune:
            lines += self._finetune_lines(m, info)
        if progress and state in ("running", "starting") and not v.step:
            total_p = progress.total
            lines.append(
                Content.assemble(
                    (clean_text(progress.phase or ""), "$accent"),
                    ": ",
                    fmt_num(progress.done, 0),
                    f"/{fmt_num(total_p, 0)}" if total_p is not None else "",
                    " ",
                    clean_text(progress.unit or ""),
                    ("  ETA ", "$text-muted"),
                    fmt_duration(progress.eta),
                )
            )
        return Content("\n").join(lines)

    def _finetune_lines(self, meta: RunMeta, info: RunInfo | None) -> list[Content]:
        """Trainable share, base, quantisation and chat template of a fine-tune: one line where they
        fit, else two, a long base (a path, a run id) cut in the middle to fit."""
        facts = finetune_facts(meta, info)
        width = (self.size.width or 120) - 2
        lora = [("LoRA ", "$text-muted"), (facts["trainable"], "bold")]
        template = [("  template ", "$text-muted"), (facts["chat_template"], "")]
        quant = [("  ", ""), (facts["quantization"], "")]

        def base(room: int) -> list[tuple[str, str]]:
            return [("base ", "$text-muted"), (clip(facts["base"], max(12, room), middle=True), "")]

        def length(parts: list[tuple[str, str]]) -> int:
            return sum(len(text) for text, _ in parts)

        one = [*lora, ("  ", ""), *base(10**6), *quant, *template]
        if length(one) <= width:
            return [Content.assemble(*one)]
        room = width - length(quant) - len("base ")
        return [Content.assemble(*lora, *template), Content.assemble(*base(room), *quant)]


#: The states a run can be resumed from (engine.runs.control.resume_run).
RESUMABLE = ("stopped", "crashed", "failed")


def resume_hint(meta: RunMeta) -> Content:
    """How to continue a stopped, crashed or failed run: the key here, the command in a shell."""
    ref = shlex.quote(clean_text(meta.name or meta.id or "RUN"))
    return Content.assemble(
        ("resume ", "$text-muted"),
        ("r", "bold $accent"),
        (" here, or ", "$text-muted"),
        (f"canvas resume {ref}", "bold"),
        (" in a shell (from its last checkpoint)", "$text-muted"),
    )


def is_finetune(meta: RunMeta, info: RunInfo | None = None) -> bool:
    return meta.kind == RunKind.FINETUNE or (info is not None and info.trainable_params is not None)


def finetune_facts(meta: RunMeta, info: RunInfo | None) -> dict[str, str]:
    """What a fine-tune trains, as display strings: ``run_info`` first, the run's config before it."""
    config = meta.config

    def pick(key: str) -> str:
        value = getattr(info, key, None) if info is not None else None
        if value in (None, ""):
            value = config.get(key)
        return clean_text(value) if value not in (None, "") else "-"

    base = pick("base")
    if base == "-" and "base" in config and not config["base"]:
        base = "newest pre-training run"
    return {
        "trainable": fmt_trainable(info.trainable_params if info else None, info.params if info else None),
        "base": base,
        "quantization": pick("quantization"),
        "chat_template": pick("chat_template"),
    }
