"""The step loop every training run shares: pre-training, QLoRA fine-tuning and the demo alike.

A run kind's trainer assembles the components (model step, optimizer, schedule, update step, data
loader, evaluation, checkpoint writer) into :class:`LoopParts` and hands them to
:class:`TrainingLoop`, which owns what must not differ between kinds: the order of operations that
exact resume depends on (a checkpoint at step S is taken after step S's update, logging and
evaluation, so a resumed run continues with step S + 1 from exactly the state an uninterrupted run
had), the metric events and TensorBoard scalars, the non-finite guard rail, stop / checkpoint-now
requests, and best/last pointers. :func:`run_guarded` runs a kind's set-up and loop and turns an
out-of-memory error into a message that says what to change.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from engine.config.loop import LoopConfig
from engine.runs.session import EngineSession
from engine.train.checkpoint import TrainerState
from engine.train.checkpointer import Checkpointer, TrainingStopped
from engine.train.optim import CosineSchedule
from engine.train.progress import Progress, ResumableLoader
from engine.train.recorder import RunRecorder
from engine.train.update import OptimizerUpdate, StepResult

__all__ = [
    "DistInfo",
    "LoopParts",
    "RunControl",
    "StepResult",
    "TrainingLoop",
    "TrainingStopped",
    "peak_memory",
    "pick_device",
    "run_guarded",
]


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


def pick_device(requested: str, dist_info: DistInfo) -> torch.device:
    """The device of this process: under torchrun a bare ``cuda`` means this rank's own GPU, as
    ``auto`` does (every rank on GPU 0 would run out of memory or serialise)."""
    if requested == "cuda":
        return torch.device("cuda", dist_info.local_rank)
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _nothing() -> None:
    return None


def _no_mfu(tokens_per_s: float) -> float | None:
    return None


#: A checkpoint's full weights and optimizer state when the kind had to gather them (FSDP).
Gathered = tuple[dict[str, torch.Tensor] | None, dict[str, Any]]


@dataclass
class LoopParts:
    """What a run kind hands the loop. ``train_step`` runs the step's micro-batches and finishes
    with ``update``; ``write_checkpoint(folder, state, weights)`` writes the kind's files (weights
    is the gathered full state dict, or ``None`` to take it from the model)."""

    device: torch.device
    optimizer: torch.optim.Optimizer
    schedule: CosineSchedule
    update: OptimizerUpdate
    loader: ResumableLoader
    total: int
    train_step: Callable[[], StepResult]
    evaluate: Callable[[], float | None]
    write_checkpoint: Callable[[Path, TrainerState, dict[str, torch.Tensor] | None], None]
    gather_checkpoint: Callable[[], Gathered | None] = field(default=_nothing)
    mfu: Callable[[float], float | None] = field(default=_no_mfu)
    on_finished: Callable[[], None] = field(default=_nothing)
    #: Writes ``sample`` events at a step (rank 0, every ``sample_every`` steps); None: no samples.
    sample: Callable[[int], None] | None = None


class RunControl:
    """Stop and checkpoint-now requests as decided by rank 0, agreed by every rank."""

    def __init__(self, session: EngineSession | None, dist_info: DistInfo, device: torch.device) -> None:
        self.session, self.dist, self.device = session, dist_info, device

    def __call__(self) -> tuple[bool, bool]:
        stop = bool(self.session and self.session.stop_requested)
        ckpt = bool(self.session and self.session.checkpoint_requested())
        if self.dist.world_size > 1:
            flags = torch.tensor([float(stop), float(ckpt)], device=self.device)
            dist.broadcast(flags, src=0)
            stop, ckpt = bool(flags[0]), bool(flags[1])
        return stop, ckpt


class TrainingLoop:
    def __init__(
        self,
        cfg: LoopConfig,
        parts: LoopParts,
        progress: Progress,
        *,
        recorder: RunRecorder,
        checkpointer: Checkpointer,
        control: Callable[[], tuple[bool, bool]],
        dist_info: DistInfo,
    ) -> None:
        self.cfg = cfg
        self.parts = parts
        self.progress = progress
        self.recorder = recorder
        self.checkpointer = checkpointer
        self.control = control
        self.dist = dist_info

    def checkpoint(self, reason: str) -> Path | None:
        p, progress = self.parts, self.progress
        gathered = p.gather_checkpoint()  # collective where it gathers: every rank takes part
        if not self.dist.is_main:
            return None

        def write(folder: Path) -> None:
            weights, optim = gathered if gathered is not None else (None, p.optimizer.state_dict())
            p.write_checkpoint(folder, progress.state(optim, p.update, p.schedule, p.loader), weights)

        return self.checkpointer.save(progress.step, reason, write)

    def _metric(self, result: StepResult, lr: float, window: _Window) -> None:
        progress, elapsed = self.progress, time.perf_counter() - window.start
        rate = window.tokens / elapsed
        loader = self.parts.loader
        fields: dict[str, Any] = dict(
            step=progress.step,
            loss=result.loss,
            lr=lr,
            grad_norm=result.grad_norm,
            tokens_per_s=rate,
            samples_per_s=window.samples / elapsed,
            step_time=elapsed / window.steps,
            tokens=progress.tokens,
            peak_mem=peak_memory(self.parts.device),
            skipped=progress.skipped,
            epoch=loader.epoch + loader.step / loader.batches_per_epoch,
            mfu=self.parts.mfu(rate),
        )
        self.recorder.emit("metric", **fields)
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "step_time"):
            if fields[key] is not None and math.isfinite(fields[key]):
                self.recorder.scalar(f"train/{key}", fields[key], progress.step)

    def run(self) -> None:
        """Steps until ``total`` or a stop request (checkpointing on the way out)."""
        cfg, p, progress = self.cfg, self.parts, self.progress
        eval_every = cfg.eval_every or max(1, p.total // 10)
        window = _Window()
        pace = _Pace(progress.step, p.total)
        self._steps(eval_every, window, pace)
        if self.dist.is_main and pace.reported:  # the phase line closes (the console clears it)
            self.recorder.emit(
                "progress", phase="training: done", done=progress.step, total=p.total, unit="steps"
            )

    def _steps(self, eval_every: int, window: _Window, pace: _Pace) -> None:
        cfg, p, progress = self.cfg, self.parts, self.progress
        while progress.step < p.total:
            lr = p.schedule.apply(p.optimizer, progress.step)
            result = p.train_step()
            progress.record(result)
            window.add(result)
            if not result.applied:
                self.recorder.log(
                    f"step {progress.step}: non-finite loss or gradient (loss {result.loss}, grad norm "
                    f"{result.grad_norm}); update skipped ({progress.nonfinite_streak} in a row)",
                    level="warning",
                )
            diverged = progress.nonfinite_streak >= cfg.max_nonfinite
            last = progress.step == p.total
            first = progress.step == pace.start_step + 1  # the first step of this session: shown at once
            if self.dist.is_main and (progress.step % cfg.log_every == 0 or last or diverged or first):
                self._metric(result, lr, window)
                window = _Window()
                pace.metric()
            elif self.dist.is_main and pace.due():  # between metrics: steps, rate and ETA, every few s
                self.recorder.emit("progress", **pace.fields(progress.step))
            if diverged:
                raise TrainingStopped(
                    f"the loss or gradient was not finite for {progress.nonfinite_streak} steps in a row "
                    f"(max_nonfinite={cfg.max_nonfinite}) at step {progress.step}: training diverged. "
                    "Fix: lower lr, raise warmup_steps, or check the data; resume from the last "
                    "checkpoint, which is intact."
                )
            reasons: list[str] = []
            if progress.step % eval_every == 0 or last:
                val = p.evaluate()  # all-reduced: every rank sees the same value and decides alike
                if val is not None and self.dist.is_main:
                    ppl = math.exp(min(val, 50.0))
                    self.recorder.emit("eval", step=progress.step, val_loss=val, perplexity=ppl)
                    self.recorder.scalar("val/loss", val, progress.step)
                    self.recorder.scalar("val/perplexity", ppl, progress.step)
                if val is not None and val < progress.best_val:
                    progress.best_val = val
                    reasons.append("best validation loss")
            sampling = p.sample is not None and cfg.sample_every and progress.step % cfg.sample_every == 0
            if sampling and self.dist.is_main and p.sample is not None:
                p.sample(progress.step)  # leaves the model, its mode and the RNGs as they were
            stop, ckpt_now = self.control()
            if cfg.checkpoint_every and progress.step % cfg.checkpoint_every == 0:
                reasons.append(f"every {cfg.checkpoint_every} steps")
            if ckpt_now:
                reasons.append("requested")
            if stop:
                reasons.append("stop requested")
            if last:
                reasons.append("end of training")
            if reasons:
                path = self.checkpoint(", ".join(reasons))
                if path is not None and "best validation loss" in reasons:
                    self.checkpointer.mark_best(path, progress.step, progress.best_val)
            if stop:
                self.recorder.log(f"stopped at step {progress.step} of {p.total}")
                break
        if progress.step == p.total and self.dist.is_main:
            p.on_finished()


class _Pace:
    """Progress between metric events (``log_every`` steps can take minutes): a ``progress`` event
    of phase ``training`` (steps done, steps per second over this session, ETA) at most every
    :attr:`interval_s` seconds; closed by ``training: done`` when the loop ends."""

    interval_s = 2.0

    def __init__(self, start_step: int, total: int) -> None:
        self.start_step, self.total = start_step, total
        self.started = self.last = time.perf_counter()
        self.reported = False

    def metric(self) -> None:
        self.last = time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.interval_s

    def fields(self, step: int) -> dict[str, Any]:
        now = time.perf_counter()
        self.last, self.reported = now, True
        rate = (step - self.start_step) / max(now - self.started, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else None
        return dict(phase="training", done=step, total=self.total, unit="steps", rate=rate, eta=eta)


class _Window:
    """Tokens, samples and steps since the last metric event (its rates are over this window)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tokens = self.samples = self.steps = 0

    def add(self, result: StepResult) -> None:
        self.tokens += result.tokens
        self.samples += result.samples
        self.steps += 1


def run_guarded(
    cfg: LoopConfig,
    recorder: RunRecorder,
    *,
    setup: Callable[[], TrainingLoop],
    before_first_step: Callable[[], None],
    oom_advice: Callable[[], str],
    device: Callable[[], torch.device | None],
) -> None:
    """Set up, run the first evaluation, train; an out-of-memory error in any of them becomes a
    :class:`TrainingStopped` naming where it happened, the batch shape and ``oom_advice()``."""
    phase = "setting up (loading the model)"
    loop: TrainingLoop | None = None
    try:
        loop = setup()
        phase = "the first evaluation"
        before_first_step()
        phase = "training"
        loop.run()
    except torch.OutOfMemoryError as exc:
        where = f"at step {loop.progress.step + 1}" if loop and phase == "training" else f"while {phase}"
        on = device()
        peak = f" (peak {peak_memory(on) / 2**30:.1f} GiB)" if on is not None else ""
        raise TrainingStopped(
            f"out of memory {where} with micro_batch={cfg.micro_batch} and seq_len={cfg.seq_len}{peak}. "
            f"Fix: {oom_advice()} The last checkpoint is intact."
        ) from exc
    finally:
        recorder.close()
