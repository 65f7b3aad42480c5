"""The headless demo: the tiny model learns the embedded corpus for a few hundred steps on CPU.

It is the shortest end-to-end proof that data, tokenizer, model, mixed precision, the training
loop and generation fit together, so it runs the real thing: a ``pretrain`` run is created in the
run store and :class:`engine.train.trainer.Trainer` trains it in the foreground, in this process,
with the run's events, checkpoints and TensorBoard scalars written as for any run (``canvas runs``
lists it afterwards). The demo only chooses the config, prints what the run reports, and samples
from the trained model at the end.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError
from engine.config.train import TrainConfig, load_train_config
from engine.data import DataProgress
from engine.runs.events import Eval, Event, Log, Metric, RunInfo
from engine.runs.format import format_event
from engine.runs.store import RunDir


class DemoStopped(RuntimeError):
    """The demo's run failed for a reason the message explains (it is recorded in the run too)."""


@dataclass
class DemoResult:
    losses: list[float]  # every step's training loss, as the run's metric events recorded it
    val_loss: float
    sample: str
    tokens_per_s: float
    precision: str
    run: RunDir | None = None
    steps: int = 0  # steps trained (fewer than asked when stopped with Ctrl-C)


def demo_config(steps: int, *, micro_batch: int, seq_len: int, lr: float, seed: int) -> TrainConfig:
    """The tiny preset, shortened to ``steps`` and evaluated once, at the end. Every step is
    logged: the demo prints from (and returns) the run's own metric events."""
    return load_train_config(
        "tiny",
        sets=[
            f"max_steps={steps}",
            f"micro_batch={micro_batch}",
            f"seq_len={seq_len}",
            f"lr={lr}",
            f"seed={seed}",
            "log_every=1",
            f"eval_every={steps}",
            "eval_batches=4",
        ],
    )


@dataclass
class _Printer:
    """Turns the run's events into the demo's lines as they happen. It reads the decoded events
    every reader of a run sees (the trainer's observer gets them so); its step line is a progress
    summary (tokens/s averaged since the start), a warning or an error is the one formatter's."""

    echo: Callable[[str], None]
    log_every: int
    summary: Callable[[], str]
    batch: str = ""  # "8 x 256 tokens"
    losses: list[float] = field(default_factory=list)
    val_loss: float = float("nan")
    precision: str = ""
    total: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunInfo):
            self.precision = event.precision or ""
            self.total = event.total_steps or 0
            params = f"{event.params:,}" if event.params is not None else "?"
            self.echo(self.summary())
            self.echo(
                f"training the tiny model ({params} parameters) for {self.total} steps on "
                f"{event.device} in {self.precision}, batch {self.batch}"
            )
        elif isinstance(event, Metric) and event.loss is not None:
            step, loss = event.step, event.loss
            self.losses.append(loss)
            self.seconds += event.step_time or 0.0
            self.tokens = event.tokens if event.tokens is not None else self.tokens
            if step % self.log_every == 0 or step == self.total:
                rate = self.tokens / self.seconds if self.seconds else 0.0
                lr = f"{event.lr:.2e}" if event.lr is not None else "-"
                self.echo(f"step {step:5d}/{self.total}  loss {loss:.3f}  lr {lr}  {rate:,.0f} tok/s")
        elif isinstance(event, Eval) and event.val_loss is not None:
            self.val_loss = event.val_loss
        elif isinstance(event, Log) and event.level in ("warning", "error"):
            self.echo(format_event(event))


def run_demo(
    steps: int = 300,
    *,
    micro_batch: int = 8,
    seq_len: int = 256,
    lr: float = 3e-3,
    seed: int = 1337,
    log_every: int = 10,
    out: Path | None = None,
    prompt: str = "The ",
    progress: Callable[[DataProgress], None] | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Create a ``pretrain`` run of the tiny model, train it here, sample from it, and report."""
    from engine.runs.session import run_context
    from engine.train.preflight import create
    from engine.train.trainer import Trainer, TrainingStopped

    # The same check-and-create as `canvas train` and the console: bad settings are refused with
    # the same message before a run directory exists.
    run, checked = create(demo_config(steps, micro_batch=micro_batch, seq_len=seq_len, lr=lr, seed=seed))
    cfg = checked.config
    trainer: Trainer | None = None
    printer = _Printer(
        echo,
        max(1, log_every),
        lambda: trainer.prepared.summary() if trainer else "",
        batch=f"{cfg.micro_batch} x {cfg.seq_len} tokens",
    )
    main_thread = threading.current_thread() is threading.main_thread()
    # The engine's own log lines go to the run's engine.log, as for a detached run, not the terminal.
    with (
        open(run.log_path, "a") as log,
        contextlib.redirect_stderr(log),
        run_context(run, install_signals=main_thread, exit_on_error=False) as session,
    ):
        trainer = Trainer(cfg, run.path, session, observer=printer, data_progress=progress)
        try:
            trainer.run()
        except (TrainingStopped, ConfigError) as exc:
            session.set_outcome("failed", str(exc))
            raise DemoStopped(str(exc)) from None
    if trainer.step < steps:
        echo(f"stopped at step {trainer.step} of {steps}")
    if math.isfinite(printer.val_loss):
        echo(f"validation loss {printer.val_loss:.3f} (perplexity {math.exp(printer.val_loss):.1f})")
    sample = _sample(trainer, prompt, seed)
    echo("sample: " + sample)
    if out is not None:
        from engine.data.tokenizer import export_tokenizer
        from engine.model import save_model

        save_model(trainer.model, out)
        export_tokenizer(trainer.prepared.tokenizer_dir, out)
        echo(
            f"weights and tokenizer saved to {out} (canvas export {out} --hf DIR makes it a "
            "transformers model)"
        )
    name = run.read_meta().name
    echo(f"the run is {name} in the run store: `canvas logs {name}` shows its events, `canvas` opens it")
    rate = printer.tokens / printer.seconds if printer.seconds else 0.0
    return DemoResult(
        printer.losses, printer.val_loss, sample, rate, printer.precision, run=run, steps=trainer.step
    )


def _sample(trainer: Any, prompt: str, seed: int) -> str:
    """A few dozen tokens the trained model writes after ``prompt``."""
    from tokenizers import Tokenizer

    from engine.model import SamplingParams, generate

    prepared, model = trainer.prepared, trainer.model
    tok = Tokenizer.from_file(str(prepared.tokenizer_dir / "tokenizer.json"))
    ids = [tok.token_to_id("<|bos|>"), *tok.encode(prompt).ids]
    room = max(1, min(60, model.config.max_seq_len - len(ids)))
    model.eval()
    new = generate(
        model,
        [ids],
        SamplingParams(
            max_new_tokens=room, temperature=0.8, top_k=50, seed=seed, stop_tokens=(prepared.eos_id,)
        ),
    )[0]
    return prompt + tok.decode(new)


if __name__ == "__main__":  # pragma: no cover
    run_demo(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
