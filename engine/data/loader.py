"""The training loader: deterministic, resumable, rank-sharded batches from a token file.

A token file (``train.bin``) is cut into non-overlapping windows of ``seq_len + 1`` tokens that
start at multiples of ``seq_len`` (the extra token is the last target). Each epoch visits every
window once in an order drawn from ``(seed, epoch)``; step ``k`` of an epoch uses windows
``order[k*G : (k+1)*G]`` where ``G = micro_batch * world_size``, and rank ``r`` takes the
``r``-th slice of ``micro_batch`` of them. So ranks see disjoint windows, together covering the
epoch; the last ``n_windows mod G`` windows of an epoch's order are skipped so every rank runs the
same number of steps (DDP needs that), and a different tail is skipped each epoch.

Exact resume: the loader's whole state is ``(epoch, step)`` plus the settings it checks
(:meth:`TokenLoader.state_dict`, plain JSON-able ints). After ``load_state_dict(state)`` the next
batch is bit-identical to the one an uninterrupted loader would have produced after the batch
at which ``state`` was taken; nothing depends on time, worker scheduling or global RNG state.
Resuming with a different ``seq_len``, ``micro_batch``, world size or token file is refused with
a :class:`ConfigError` rather than silently replaying different data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.config.errors import ConfigError
from engine.data.manifest import read_dtype

STATE_VERSION = 1


def check_resume_state(
    saved: dict[str, Any], mine: dict[str, Any], keys: tuple[str, ...], what: str, also: str
) -> None:
    """Refuse a loader position saved under other settings or data: its batches would differ."""
    for key in keys:
        if key in saved and int(saved[key]) != int(mine[key]):
            raise ConfigError(
                f"data.{key}",
                f"cannot resume {what}: the checkpoint was taken with {key} = {saved[key]}, this run "
                f"has {mine[key]}; the batches would not be the ones the checkpoint expects. Fix: "
                f"resume with the same {key} {also}, or start a new run.",
            )


class TokenLoader:
    """Batches ``(x, y)`` of shape ``(micro_batch, seq_len)`` (int64 tensors; ``y`` is ``x`` shifted)."""

    def __init__(
        self,
        path: str | Path,
        seq_len: int,
        micro_batch: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        *,
        dtype: str | None = None,
        shuffle: bool = True,
        device: Any = None,
    ) -> None:
        self.path = Path(path)
        if dtype is None:
            dtype = read_dtype(self.path.parent) or "uint16"
        if not 0 <= rank < world_size:
            raise ConfigError(
                "data.rank",
                f"rank {rank} is outside 0..{world_size - 1} for world size "
                f"{world_size}. Fix: pass the process's RANK and WORLD_SIZE from torchrun.",
            )
        if seq_len < 1 or micro_batch < 1:
            raise ConfigError(
                "train.seq_len",
                f"seq_len ({seq_len}) and micro_batch ({micro_batch}) must be "
                "positive. Fix: use the preset's values, e.g. 256 and 8 for tiny.",
            )
        self.tokens = np.memmap(self.path, dtype=dtype, mode="r")
        self.dtype = dtype
        self.seq_len = seq_len
        self.micro_batch = micro_batch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.device = device
        self.n_windows = (len(self.tokens) - 1) // seq_len
        self.batches_per_epoch = self.n_windows // (micro_batch * world_size)
        if self.batches_per_epoch < 1:
            raise ConfigError(
                "train.seq_len",
                (
                    f"{self.path.name} holds {len(self.tokens):,} tokens, fewer than one batch of "
                    f"{micro_batch} x {seq_len} (+1) tokens on each of {world_size} rank(s). "
                    "Fix: use more data, a shorter seq_len, a smaller micro_batch, or fewer ranks."
                ),
            )
        self.epoch = 0
        self.step = 0
        self._order_epoch = -1
        self._order: np.ndarray | None = None

    # --- position ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Where the loader is, as plain ints; save it with the checkpoint."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "micro_batch": self.micro_batch,
            "world_size": self.world_size,
            "n_tokens": len(self.tokens),
            "shuffle": int(self.shuffle),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was taken (see the module docstring)."""
        check_resume_state(
            state,
            self.state_dict(),
            ("seq_len", "micro_batch", "world_size", "n_tokens", "seed", "shuffle"),
            "the data loader",
            "(and the same prepared data)",
        )
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])

    @property
    def tokens_per_batch(self) -> int:
        return self.micro_batch * self.seq_len

    # --- batches ----------------------------------------------------------------------------------

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch or self._order is None:
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_windows)
            else:
                self._order = np.arange(self.n_windows)
            self._order_epoch = self.epoch
        return self._order

    def next_windows(self) -> np.ndarray:
        """Indices of the windows in this rank's next batch (advances the position)."""
        if self.step >= self.batches_per_epoch:
            self.epoch += 1
            self.step = 0
        order = self._epoch_order()
        start = (self.step * self.world_size + self.rank) * self.micro_batch
        windows = order[start : start + self.micro_batch]
        self.step += 1
        return windows

    def next_batch(self) -> tuple[Any, Any]:
        """``(x, y)`` int64 tensors of shape ``(micro_batch, seq_len)``, on ``device`` when given."""
        import torch

        span = self.seq_len + 1
        buf = np.empty((self.micro_batch, span), dtype=np.int64)
        for row, window in enumerate(self.next_windows()):
            start = int(window) * self.seq_len
            buf[row] = self.tokens[start : start + span]
        batch = torch.from_numpy(buf)
        x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
        if self.device is not None and str(self.device) != "cpu":
            if torch.device(self.device).type == "cuda":
                x, y = x.pin_memory(), y.pin_memory()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y

    def __iter__(self):
        while True:
            yield self.next_batch()
