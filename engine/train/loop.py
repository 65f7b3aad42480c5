"""The step loop every training run shares: pre-training and QLoRA fine-tuning alike.

A run kind subclasses :class:`TrainingLoop` and supplies what differs (``setup``, one optimizer
step, validation, what a checkpoint holds); the loop owns what must not differ between them: the
order of operations that exact resume depends on (a checkpoint at step S is taken after step S's
update, logging and evaluation, so a resumed run continues with step S + 1 from exactly the state
an uninterrupted run had), the metric events and TensorBoard scalars, the non-finite and
out-of-memory guard rails, stop / checkpoint-now requests, best/last pointers and retention.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from engine.runs.session import EngineSession
from engine.train.checkpoint import (
    TrainerState,
    prune_checkpoints,
    rng_state,
    set_pointer,
    set_rng_state,
    write_checkpoint,
)
from engine.train.layout import checkpoint_name, resolve_checkpoint


class TrainingStopped(Exception):
    """The run cannot go on; the message says why and what to change."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistInfo:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class StepResult:
    """One optimizer step: its mean loss, gradient norm, whether the update was applied, and the
    real (non-padding) tokens and samples it consumed (for tokens/s)."""

    loss: float
    grad_norm: float
    applied: bool
    tokens: int
    samples: int


def pick_device(requested: str, dist_info: DistInfo) -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class TrainingLoop:
    """Subclasses set, in :meth:`setup`: ``device``, ``optimizer``, ``schedule``, ``total``,
    ``step``, ``tokens``, ``best_val``, ``nonfinite_streak``, ``skipped`` (restored on resume) and
    ``tb`` (rank 0), and implement the hooks below."""

    def __init__(
        self,
        cfg: Any,
        run_dir: Path,
        session: EngineSession | None,
        *,
        resume: bool = False,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        self.session = session
        self.resume = resume
        self.dist = dist_info or DistInfo()
        self.checkpoints = self.run_dir / "checkpoints"
        self.tb: Any = None

    # ------------------------------------------------------------------------------ hooks
    def setup(self) -> None:
        raise NotImplementedError

    def train_step(self) -> StepResult:
        raise NotImplementedError

    def evaluate(self) -> float | None:
        """The validation loss, identical on every rank, or ``None`` without a validation split."""
        raise NotImplementedError

    def gather_checkpoint(self) -> Any:
        """Called on every rank before a checkpoint (a sharded model gathers here)."""
        return None

    def write_checkpoint_files(self, directory: Path, gathered: Any) -> None:
        """Write the checkpoint's files into ``directory`` (a temporary name, renamed after)."""
        raise NotImplementedError

    def oom_advice(self) -> str:
        """What to change after an out-of-memory error (ends the run's one-paragraph message)."""
        return "lower micro_batch or seq_len."

    def epoch_progress(self) -> float | None:
        return None

    def mfu(self, tokens_per_s: float) -> float | None:
        return None

    def before_first_step(self) -> None:
        """After set-up, before the first step of this process (a baseline evaluation, say)."""

    def on_finished(self) -> None:
        """After the last step (rank 0 writes its outputs here)."""

    # ------------------------------------------------------------------------------ progress
    def start_progress(self) -> None:
        """The counters a fresh run starts from (a resume overwrites them from its checkpoint)."""
        self.step, self.tokens, self.best_val = 0, 0, math.inf
        self.nonfinite_streak, self.skipped = 0, 0
        self.resumed_from: int | None = None

    def last_checkpoint(self) -> Path:
        path = resolve_checkpoint(self.checkpoints, "last")
        if path is None:
            raise TrainingStopped(
                f"cannot resume: {self.checkpoints} holds no checkpoint. Fix: start "
                "a new run (the run stopped before its first checkpoint)."
            )
        return path

    def restore_progress(self, path: Path, state: TrainerState, loader: Any) -> None:
        """Everything but the weights and optimizer back as they were at the checkpoint."""
        self.scaler.load_state_dict(state.scaler)
        loader.load_state_dict(state.loader)
        set_rng_state(state.rng)
        self.step, self.tokens, self.best_val = state.step, state.tokens, state.best_val
        self.nonfinite_streak, self.skipped = state.nonfinite_streak, state.skipped_steps
        self.resumed_from = state.step
        self.log(f"resumed from {path.name} (step {state.step})")

    def progress_state(self, optimizer_state: dict, loader: Any) -> TrainerState:
        """What a checkpoint needs besides the weights for the next step to be exactly the same."""
        return TrainerState(
            step=self.step,
            tokens=self.tokens,
            optimizer=optimizer_state,
            scaler=self.scaler.state_dict(),
            schedule=self.schedule.state_dict(),
            loader=loader.state_dict(),
            rng=rng_state(),
            best_val=self.best_val,
            nonfinite_streak=self.nonfinite_streak,
            skipped_steps=self.skipped,
        )

    # ------------------------------------------------------------------------------ events
    def emit(self, event_type: str, /, **fields: Any) -> None:
        if self.session is not None:
            self.session.emit(event_type, **fields)

    def log(self, message: str, level: str = "info") -> None:
        if self.session is not None:
            self.session.log(message, level=level)  # also echoed to engine.log

    # ------------------------------------------------------------------------------ checkpoints
    def checkpoint(self, reason: str) -> Path | None:
        gathered = self.gather_checkpoint()
        if not self.dist.is_main:
            return None
        path = self.checkpoints / checkpoint_name(self.step)
        if not path.is_dir():
            write: Callable[[Path], None] = lambda tmp: self.write_checkpoint_files(tmp, gathered)  # noqa: E731
            path = write_checkpoint(self.checkpoints, self.step, write)
            self.emit("checkpoint", step=self.step, path=f"checkpoints/{path.name}", kind="last")
            self.log(f"checkpoint {path.name} ({reason})")
        else:
            set_pointer(self.checkpoints, "last", path, self.step)
        for removed in prune_checkpoints(self.checkpoints, self.cfg.keep_checkpoints):
            self.log(f"removed old checkpoint {removed.name} (keep_checkpoints={self.cfg.keep_checkpoints})")
        return path

    def mark_best(self, path: Path) -> None:
        set_pointer(self.checkpoints, "best", path, self.step, self.best_val)
        self.emit(
            "checkpoint", step=self.step, path=f"checkpoints/{path.name}", kind="best", val_loss=self.best_val
        )

    # ------------------------------------------------------------------------------ control
    def _control(self) -> tuple[bool, bool]:
        """(stop?, checkpoint now?) as decided by rank 0, agreed by every rank."""
        stop = bool(self.session and self.session.stop_requested)
        ckpt = bool(self.session and self.session.checkpoint_requested())
        if self.dist.world_size > 1:
            flags = torch.tensor([float(stop), float(ckpt)], device=self.device)
            dist.broadcast(flags, src=0)
            stop, ckpt = bool(flags[0]), bool(flags[1])
        return stop, ckpt

    def telemetry(self) -> AbstractContextManager:
        """GPU, system and emissions sampling on a background thread, rank 0 only, for the whole
        run (data preparation and model loading included: they burn energy too)."""
        if self.session is None:
            return nullcontext()
        from engine.telemetry import TelemetrySampler

        device = pick_device(self.cfg.device, self.dist)
        peak = (lambda: torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
        return TelemetrySampler(
            self.session,
            interval=self.cfg.telemetry_interval,
            country=self.cfg.carbon_country,
            output_dir=self.run_dir,
            cuda_peak=peak,
        )

    # ------------------------------------------------------------------------------ the loop
    def run(self) -> None:
        with self.telemetry():
            self._run()

    def _run(self) -> None:
        phase = "setting up (loading the model)"
        try:
            self.setup()
            phase = "the first evaluation"
            self.before_first_step()
            phase = "training"
            self._steps()
        except torch.OutOfMemoryError as exc:
            cfg = self.cfg
            where = f"at step {self.step + 1}" if phase == "training" else f"while {phase}"
            device = getattr(self, "device", None)
            peak = f" (peak {peak_memory(device) / 2**30:.1f} GiB)" if device is not None else ""
            raise TrainingStopped(
                f"out of memory {where} with micro_batch={cfg.micro_batch} and seq_len={cfg.seq_len}{peak}. "
                f"Fix: {self.oom_advice()} The last checkpoint is intact."
            ) from exc
        finally:
            if self.tb is not None:
                self.tb.close()

    def _steps(self) -> None:
        cfg = self.cfg
        eval_every = cfg.eval_every or max(1, self.total // 10)
        window_start, window_tokens, window_samples, window_steps = time.perf_counter(), 0, 0, 0
        while self.step < self.total:
            lr = self.schedule.apply(self.optimizer, self.step)
            result = self.train_step()
            loss, norm = result.loss, result.grad_norm
            self.step += 1
            self.tokens += result.tokens
            window_tokens += result.tokens
            window_samples += result.samples
            window_steps += 1
            if result.applied:
                self.nonfinite_streak = 0
            else:
                self.nonfinite_streak += 1
                self.skipped += 1
                self.log(
                    f"step {self.step}: non-finite loss or gradient (loss {loss}, grad norm {norm}); "
                    f"update skipped ({self.nonfinite_streak} in a row)",
                    level="warning",
                )
            diverged = self.nonfinite_streak >= cfg.max_nonfinite
            if self.dist.is_main and (self.step % cfg.log_every == 0 or self.step == self.total or diverged):
                elapsed = time.perf_counter() - window_start
                rate = window_tokens / elapsed
                fields = dict(
                    step=self.step,
                    loss=loss,
                    lr=lr,
                    grad_norm=norm,
                    tokens_per_s=rate,
                    samples_per_s=window_samples / elapsed,
                    step_time=elapsed / window_steps,
                    tokens=self.tokens,
                    peak_mem=peak_memory(self.device),
                    skipped=self.skipped,
                    epoch=self.epoch_progress(),
                    mfu=self.mfu(rate),
                )
                self.emit("metric", **fields)
                for key in ("loss", "lr", "grad_norm", "tokens_per_s", "step_time"):
                    if fields[key] is not None and math.isfinite(fields[key]):
                        self.tb.add_scalar(f"train/{key}", fields[key], self.step)
                window_start, window_tokens, window_samples, window_steps = time.perf_counter(), 0, 0, 0
            if diverged:
                raise TrainingStopped(
                    f"the loss or gradient was not finite for {self.nonfinite_streak} steps in a row "
                    f"(max_nonfinite={cfg.max_nonfinite}) at step {self.step}: training diverged. "
                    "Fix: lower lr, raise warmup_steps, or check the data; resume from the last "
                    "checkpoint, which is intact."
                )
            reasons: list[str] = []
            if self.step % eval_every == 0 or self.step == self.total:
                val = self.evaluate()  # all-reduced: every rank sees the same value and decides alike
                if val is not None and self.dist.is_main:
                    ppl = math.exp(min(val, 50.0))
                    self.emit("eval", step=self.step, val_loss=val, perplexity=ppl)
                    self.tb.add_scalar("val/loss", val, self.step)
                    self.tb.add_scalar("val/perplexity", ppl, self.step)
                if val is not None and val < self.best_val:
                    self.best_val = val
                    reasons.append("best validation loss")
            stop, ckpt_now = self._control()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                reasons.append(f"every {cfg.checkpoint_every} steps")
            if ckpt_now:
                reasons.append("requested")
            if stop:
                reasons.append("stop requested")
            if self.step == self.total:
                reasons.append("end of training")
            if reasons:
                path = self.checkpoint(", ".join(reasons))
                if path is not None and "best validation loss" in reasons:
                    self.mark_best(path)
            if stop:
                self.log(f"stopped at step {self.step} of {self.total}")
                break
        if self.step == self.total and self.dist.is_main:
            self.on_finished()
