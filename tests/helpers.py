"""Small builders shared by the model tests."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import torch

from engine.config import ModelConfig
from engine.model import CausalLM
from tests.waiting import wait_until

__all__ = ["in_tmux_then_kill_it", "random_model", "small_config", "wait_until"]


def small_config(**overrides) -> ModelConfig:
    """A model small enough for CPU tests but with every feature on: GQA, RoPE theta, 2 layers.

    ``init_std`` is large so that logits are far from uniform and greedy decoding is not a
    constant token (which would make generation comparisons pass trivially).
    """
    base = dict(
        vocab_size=256,
        dim=64,
        n_layers=2,
        n_heads=8,
        n_kv_heads=2,
        max_seq_len=96,
        rope_theta=50000.0,
        init_std=0.3,
        norm_eps=1e-6,
    )
    base.update(overrides)
    return ModelConfig(**base)


def random_model(seed: int = 0, **overrides) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(small_config(**overrides)).eval()


def in_tmux_then_kill_it(cmd: list[str], tmp_path: Path, ready: Callable[[], object], cwd: Path) -> object:
    """Run ``cmd`` in a private tmux server, wait until ``ready()`` is truthy, then kill the server
    (the terminal and every process attached to it) and wait for its panes to die.

    Returns what ``ready()`` returned. A private socket keeps the user's own tmux untouched.
    """
    tmux = ["tmux", "-S", str(tmp_path / f"tmux-{uuid.uuid4().hex[:8]}.sock")]
    subprocess.run(
        [
            *tmux,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "canvas",
            "-x",
            "160",
            "-y",
            "40",
            "-e",
            f"CANVAS_HOME={os.environ['CANVAS_HOME']}",
            "-c",
            str(cwd),
            " ".join(cmd),
        ],
        check=True,
        timeout=30,
    )
    try:
        value = wait_until(ready, what="the run inside tmux")
        panes = subprocess.run(
            [*tmux, "list-panes", "-F", "#{pane_pid}"], capture_output=True, text=True, timeout=10
        ).stdout.split()
        subprocess.run([*tmux, "kill-server"], check=True, timeout=10)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
    for pid in map(int, panes):
        wait_until(
            lambda pid=pid: (
                not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            ),
            what="the tmux pane to die",
        )
    return value
