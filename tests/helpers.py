"""Small builders shared by the model tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch

from engine.config import ModelConfig
from engine.model import CausalLM


def small_config(**overrides) -> ModelConfig:
    """A model small enough for CPU tests but with every feature on: GQA, RoPE theta, 2 layers.

    ``init_std`` is large so that logits are far from uniform and greedy decoding is not a
    constant token (which would make generation comparisons pass trivially).
    """
    base = dict(vocab_size=256, dim=64, n_layers=2, n_heads=8, n_kv_heads=2, max_seq_len=96,
                rope_theta=50000.0, init_std=0.3, norm_eps=1e-6)
    base.update(overrides)
    return ModelConfig(**base)


def random_model(seed: int = 0, **overrides) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(small_config(**overrides)).eval()


def wait_until(predicate: Callable[[], object], timeout: float = 120.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned), or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")
