"""AdamW with weight-decay groups, and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices of the linear layers only: not norms (scale parameters) and not the
    embedding (decaying it shrinks rare tokens' vectors towards zero). A tied head shares the
    embedding's parameter and follows it."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], device_type: str
) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=1e-8, fused=device_type == "cuda"
    )


@dataclass
class CosineSchedule:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_ratio`` at ``total`` steps."""

    lr: float
    total: int
    warmup: int
    min_ratio: float

    def at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        floor = self.lr * self.min_ratio
        return floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"lr": self.lr, "total": self.total, "warmup": self.warmup, "min_ratio": self.min_ratio}


def auto_warmup(total: int) -> int:
    return max(1, min(1000, total // 20))
