"""A preallocated key/value cache for generation.

One tensor pair per layer, allocated once at its final size and filled in place; attention reads
a view of the filled prefix. No ``torch.cat`` per step, no per-step allocation: this is where the
generation speed over ``transformers``' dynamic cache comes from.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.max_len = max_len
        self.length = 0  # tokens already stored (same for every layer and every sequence)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's k/v for ``layer`` and return everything cached so far (views)."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(
                f"KV cache is full: {end} tokens needed, {self.max_len} allocated. "
                "Allocate the cache with max_len >= prompt length + max_new_tokens."
            )
        keys, values = self.keys[layer], self.values[layer]
        keys.narrow(2, self.length, k.shape[2]).copy_(k)
        values.narrow(2, self.length, v.shape[2]).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def advance(self, n: int) -> None:
        """Called once per forward, after every layer stored its ``n`` new positions."""
        self.length += n

    def reset(self) -> None:
        self.length = 0
