"""The end of every optimizer step, written once for every run kind.

After the kind's micro-batches have run backward: unscale (fp16), clip, agree on the loss across
ranks, refuse a non-finite update (the weights must never see one), step, let the gradient scaler
adapt, clear the gradients. The loop counts the refused updates (:class:`StepResult.applied`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from engine.train.parallel import plain
from engine.train.precision import Precision


@dataclass(frozen=True)
class StepResult:
    """One optimizer step: its mean loss, gradient norm, whether the update was applied, and the
    real (non-padding) tokens and samples it consumed (for tokens/s)."""

    loss: float
    grad_norm: float
    applied: bool
    tokens: int
    samples: int


class OptimizerUpdate:
    """Owns the gradient scaler (a checkpoint holds its state) and applies one update."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: Iterable[torch.Tensor],
        *,
        grad_clip: float,
        precision: Precision,
        world_size: int = 1,
    ) -> None:
        self.optimizer = optimizer
        self.params = list(params)
        self.clip = grad_clip if grad_clip > 0 else math.inf
        self.precision = precision
        self.world_size = world_size
        self.scaler = precision.grad_scaler()

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of one micro-batch's share of the step's loss (scaled for fp16)."""
        self.scaler.scale(loss).backward()

    def __call__(self, loss_sum: torch.Tensor, tokens: int, samples: int) -> StepResult:
        """Finish the step whose micro-batch losses add up to ``loss_sum`` (this rank's)."""
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if self.world_size > 1:
            dist.all_reduce(loss_sum)  # SUM: gloo has no AVG
            loss_sum /= self.world_size
        loss, grad_norm = loss_sum.item(), plain(norm).item()
        fp16_overflow = self.precision.name == "fp16" and math.isfinite(loss)
        applied = math.isfinite(loss) and (math.isfinite(grad_norm) or fp16_overflow)
        if applied:
            self.scaler.step(self.optimizer)  # skips by itself on an fp16 overflow
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, grad_norm, applied and math.isfinite(grad_norm), tokens, samples)
