"""The dashboard's top lines: who the run is, its true status, progress with ETA, latest numbers.

A pre-training run shows its parameter count; a fine-tune shows what it trains instead: its base,
the quantisation, the LoRA adapters' share of the parameters and the chat template, from its
``run_info`` (or, before the engine wrote one, from the config in ``run.json``).
"""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widgets import Static

from canvas_tui.fmt import clean_text, clip, fmt_duration, fmt_loss, fmt_num, fmt_si, fmt_step, fmt_trainable
from canvas_tui.viewmodel import RunView
from engine.runs.status import RunStatus

STATUS_STYLE = {
    "running": "bold $success",
    "starting": "bold $accent",
    "created": "$text-muted",
    "finished": "bold $primary",
    "stopped": "bold $warning",
    "failed": "bold $error",
    "crashed": "bold $error",
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
        self.meta: dict[str, Any] = {}
        self.status: RunStatus | None = None
        self.view: RunView | None = None

    def on_resize(self) -> None:
        self.update(self._content())

    @property
    def text(self) -> str:
        return str(self.content)

    def show(
        self, meta: dict[str, Any] | None = None, status: RunStatus | None = None, view: RunView | None = None
    ) -> None:
        if meta is not None:
            self.meta = meta
        if status is not None:
            self.status = status
        if view is not None:
            self.view = view
        self.update(self._content())

    def _content(self) -> Content:
        m, v = self.meta, self.view or RunView()
        state = self.status.state if self.status else str(m.get("status") or "unknown")
        verified = self.status.verified if self.status else True
        line1 = Content.assemble(
            (clean_text(m.get("name") or "?"), "bold"),
            "  ",
            (clean_text(m.get("id") or ""), "$text-muted"),
            "  ",
            (clean_text(m.get("kind") or ""), "$text-muted"),
            "  ",
            status_content(state, verified),
        )
        if self.status and self.status.message and state not in ("running",):
            line1 = line1 + Content.styled(": " + clean_text(self.status.message), "$text-muted")
        total = v.total_steps or m.get("total_steps")
        fraction = (
            v.fraction_done()
            if v.total_steps
            else ((v.step or 0) / total if isinstance(total, int) and total else None)
        )
        bar_width = max(8, min(40, self.size.width - 62)) if self.size.width else 20
        eta = v.eta_seconds() if state in ("running", "starting") else None
        metric = v.last_metric or {}
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
            fmt_si(metric.get("tokens_per_s")),
        )
        best = v.best_val
        nonfinite = ""
        if v.nonfinite:
            step, kind = v.nonfinite[-1]
            nonfinite = f"  loss {kind} at step {step} ({len(v.nonfinite)}x)"
        info = v.run_info or {}
        finetune = is_finetune(m, info)
        line3 = Content.assemble(
            ("loss ", "$text-muted"),
            fmt_loss(metric.get("loss")),
            ("  val ", "$text-muted"),
            fmt_loss((v.last_eval or {}).get("val_loss")),
            ("  best ", "$text-muted"),
            "-" if best is None else f"{fmt_loss(best[1])} @ {best[0]}",
            ("  lr ", "$text-muted"),
            fmt_num(metric.get("lr"), 3),
            ("" if finetune else "  params ", "$text-muted"),
            "" if finetune else fmt_si(info.get("params")),
            ("  ", ""),
            clean_text(info.get("precision") or ""),
            " ",
            clean_text(info.get("device") or ""),
            (nonfinite, "bold $error"),
        )
        progress = v.progress
        lines = [line1, line2, line3]
        if finetune:
            lines += self._finetune_lines(m, info)
        if progress and state in ("running", "starting") and not v.step:
            total_p = progress.get("total")
            lines.append(
                Content.assemble(
                    (clean_text(progress.get("phase") or ""), "$accent"),
                    ": ",
                    fmt_num(progress.get("done"), 0),
                    f"/{fmt_num(total_p, 0)}" if total_p is not None else "",
                    " ",
                    clean_text(progress.get("unit") or ""),
                    ("  ETA ", "$text-muted"),
                    fmt_duration(progress.get("eta")),
                )
            )
        return Content("\n").join(lines)

    def _finetune_lines(self, meta: dict[str, Any], info: dict[str, Any]) -> list[Content]:
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


def is_finetune(meta: dict[str, Any], info: dict[str, Any] | None = None) -> bool:
    return meta.get("kind") == "finetune" or (info or {}).get("trainable_params") is not None


def finetune_facts(meta: dict[str, Any], info: dict[str, Any]) -> dict[str, str]:
    """What a fine-tune trains, as display strings: ``run_info`` first, the run's config before it."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}

    def pick(key: str) -> str:
        value = info.get(key)
        if value in (None, ""):
            value = config.get(key)
        return clean_text(value) if value not in (None, "") else "-"

    base = pick("base")
    if base == "-" and "base" in config and not config["base"]:
        base = "newest pre-training run"
    return {
        "trainable": fmt_trainable(info.get("trainable_params"), info.get("params")),
        "base": base,
        "quantization": pick("quantization"),
        "chat_template": pick("chat_template"),
    }
