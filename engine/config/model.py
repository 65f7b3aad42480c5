"""The model's shape as a dataclass: validated on construction, sized without torch.

Everything derived from the shape (head size, FFN width, parameter count, memory estimate) is
computed here, in one place, so the CLI, the console's New-run form and the engine agree, and
none of them needs torch to answer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.config.errors import ConfigError


def _divisors_near(n: int, around: int, count: int = 3) -> list[int]:
    """Divisors of ``n`` closest to ``around``, to suggest in an error message."""
    divs = [d for d in range(1, n + 1) if n % d == 0]
    return sorted(sorted(divs, key=lambda d: (abs(d - around), d))[:count])


def llama_ffn_dim(dim: int, multiple_of: int = 256) -> int:
    """Llama's SwiGLU width rule: 2/3 of 4*dim (same parameters as a 4*dim GELU MLP), rounded up."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


@dataclass
class ModelConfig:
    """Shape of the Llama-style decoder. Field names are the keys users write in TOML and ``--set``.

    ``ffn_dim=0`` means "Llama's rule" (8/3 * dim rounded up to ``ffn_multiple_of``);
    ``n_kv_heads=0`` means "as many as ``n_heads``" (plain multi-head attention).
    """

    vocab_size: int = 32000
    dim: int = 1024
    n_layers: int = 12
    n_heads: int = 16
    n_kv_heads: int = 0
    ffn_dim: int = 0
    ffn_multiple_of: int = 256
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.n_kv_heads == 0:
            self.n_kv_heads = self.n_heads
        if self.ffn_dim == 0 and isinstance(self.dim, int) and self.dim > 0:
            self.ffn_dim = llama_ffn_dim(self.dim, max(1, int(self.ffn_multiple_of)))
        self.validate()

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field and a fix."""
        for name in (
            "vocab_size",
            "dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "ffn_dim",
            "ffn_multiple_of",
            "max_seq_len",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"model.{name}",
                    f"model.{name} = {value!r} must be a positive whole number. "
                    f"Fix: set model.{name} to an integer of at least 1.",
                )
        for name in ("rope_theta", "norm_eps", "init_std"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not value > 0
                or not math.isfinite(value)
            ):
                raise ConfigError(
                    f"model.{name}",
                    f"model.{name} = {value!r} must be a positive number. "
                    f"Fix: set model.{name} > 0 (typical: rope_theta 10000 or 500000, "
                    "norm_eps 1e-5, init_std 0.02).",
                )
        if not isinstance(self.tie_embeddings, bool):
            raise ConfigError(
                "model.tie_embeddings",
                f"model.tie_embeddings = {self.tie_embeddings!r} must be true or false.",
            )
        if self.dim % self.n_heads:
            raise ConfigError(
                "model.n_heads",
                f"model.n_heads = {self.n_heads} does not divide model.dim = {self.dim}: each "
                "attention head gets dim / n_heads channels. Fix: choose n_heads from "
                f"{_divisors_near(self.dim, self.n_heads)}, or set dim to a multiple of "
                f"{self.n_heads} such as {self.n_heads * max(1, round(self.dim / self.n_heads))}.",
            )
        if self.n_kv_heads > self.n_heads or self.n_heads % self.n_kv_heads:
            raise ConfigError(
                "model.n_kv_heads",
                f"model.n_kv_heads = {self.n_kv_heads} does not divide model.n_heads = "
                f"{self.n_heads}: in grouped-query attention each key/value head serves an equal "
                "group of query heads. Fix: choose n_kv_heads from "
                f"{_divisors_near(self.n_heads, self.n_kv_heads, 4)}.",
            )
        if self.head_dim % 2:
            raise ConfigError(
                "model.n_heads",
                f"the head size dim / n_heads = {self.dim} / {self.n_heads} = {self.head_dim} is "
                "odd, but rotary position embeddings rotate channel pairs. Fix: pick n_heads so "
                f"that dim / n_heads is even (for dim = {self.dim}: "
                f"{[h for h in _divisors_near(self.dim, self.n_heads, 6) if (self.dim // h) % 2 == 0]}).",
            )

    def check_seq_len(self, seq_len: int, field: str = "seq_len") -> None:
        """Fail with a named error when a requested context exceeds what the model was built for."""
        if seq_len > self.max_seq_len:
            raise ConfigError(
                field,
                f"{field} = {seq_len} is longer than the model's context model.max_seq_len = "
                f"{self.max_seq_len}: positions past it have no rotary table and were never "
                f"trained. Fix: lower {field} to at most {self.max_seq_len}, or also raise "
                f"model.max_seq_len to {seq_len} (a new model with a longer context, e.g. "
                f"--set model.max_seq_len={seq_len}).",
            )

    # ----------------------------------------------------------------------------- derived sizes
    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def num_params(self, include_embeddings: bool = True) -> int:
        """Exact parameter count of :class:`engine.model.CausalLM` for this shape (a test checks it)."""
        attn = self.dim * self.dim * 2 + self.dim * self.kv_dim * 2  # q, o + k, v; no biases
        mlp = 3 * self.dim * self.ffn_dim  # gate, up, down
        norms = 2 * self.dim
        per_layer = attn + mlp + norms
        body = self.n_layers * per_layer + self.dim  # + final norm
        if not include_embeddings:
            return body
        embed = self.vocab_size * self.dim
        head = 0 if self.tie_embeddings else self.vocab_size * self.dim
        return body + embed + head

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L d T."""
        t = seq_len or self.max_seq_len
        n = self.num_params(include_embeddings=False) + (
            0 if self.tie_embeddings else self.vocab_size * self.dim
        )
        return 6 * n + 12 * self.n_layers * self.dim * t

    def training_memory_bytes(self, micro_batch: int = 1, seq_len: int | None = None) -> dict[str, int]:
        """Estimate of memory to train in bf16 autocast with AdamW and flash attention.

        Weights and gradients stay fp32 under autocast and AdamW keeps two fp32 moments: 16 bytes a
        parameter. Activations follow Korthikanti et al. 2022 (34·s·b·d bytes a layer in 16-bit,
        without the s² attention term that flash attention avoids), adapted to SwiGLU and GQA, plus
        the logits (bf16 + fp32 copy for the loss + its gradient). An estimate, not a promise:
        allocator fragmentation and the compile workspace come on top.
        """
        s = seq_len or self.max_seq_len
        b = micro_batch
        n = self.num_params()
        per_layer = (
            s
            * b
            * (
                2 * self.dim * 4  # two norm inputs/outputs
                + 2 * (self.dim + 2 * self.kv_dim)  # q, k, v
                + 2 * self.dim * 2  # attention output + o_proj input
                + 4 * self.dim  # flash-attention softmax stats and output, rounded
                + 2 * self.ffn_dim * 3  # gate, up, silu(gate)*up
            )
        )
        logits = s * b * self.vocab_size * (2 + 4 + 4)
        parts = {
            "weights": 4 * n,
            "gradients": 4 * n,
            "optimizer": 8 * n,
            "activations": self.n_layers * per_layer + logits,
        }
        parts["total"] = sum(parts.values())
        return parts

    # ----------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys by name (a typo must not be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            import difflib

            hints = [
                f"{k!r} (did you mean {m[0]!r}?)"
                if (m := difflib.get_close_matches(k, known, 1))
                else repr(k)
                for k in unknown
            ]
            raise ConfigError(
                f"model.{unknown[0]}",
                f"unknown model setting {', '.join(hints)}. Known settings: {', '.join(sorted(known))}.",
            )
        return cls(**data)
