"""Data parallelism applied from outside the model (torchtitan's ``parallelize`` idea).

``ddp`` replicates the model and all-reduces gradients; ``fsdp`` (FSDP2, ``fully_shard``) shards
parameters, gradients and optimizer state across ranks, per block, for models that do not fit
on one GPU. The model code knows nothing of either.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

FULL = None  # StateDictOptions, built lazily (torch.distributed.checkpoint imports are slow)


def _options(**kw: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def shard_fsdp(model: nn.Module, device: torch.device) -> None:
    """FSDP2: each transformer block is one all-gather unit; the root holds embeddings and head."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in model.model.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def gradient_sync(step_model: nn.Module, mode: str, world_size: int, sync: bool) -> AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if world_size == 1:
        return nullcontext()
    if mode == "fsdp":
        step_model.set_requires_gradient_sync(sync)
        return nullcontext()
    return nullcontext() if sync else step_model.no_sync()


def full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, mode: str, world_size: int
) -> tuple[dict[str, torch.Tensor], dict]:
    """Unsharded model and optimizer state on CPU. Under FSDP every rank must call this."""
    if world_size > 1 and mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        opts = _options(cpu_offload=True)
        return get_model_state_dict(model, options=opts), get_optimizer_state_dict(
            model, optimizer, options=opts
        )
    return model.state_dict(), optimizer.state_dict()


def load_full_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    weights: dict,
    optim_state: dict,
    mode: str,
    world_size: int,
) -> None:
    if world_size > 1 and mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(model, weights, options=_options())
        set_optimizer_state_dict(model, optimizer, optim_state, options=_options())
        return
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint does not match the model: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    optimizer.load_state_dict(optim_state)


def plain(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (FSDP2 gradient norms are DTensors); other tensors unchanged."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value
