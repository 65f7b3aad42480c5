"""Distributed data parallel through torchrun, on CPU with gloo: 2 ranks = 1 process, same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runs.reader import EventReader
from engine.runs.store import resolve_run

REPO = Path(__file__).resolve().parents[1]
#: The embedded corpus is prepared once per session (tests/conftest.py); each test keeps its own runs.
pytestmark = pytest.mark.usefixtures("shared_cache")

COMMON = [
    "--set",
    "max_steps=6",
    "--set",
    "seq_len=32",
    "--set",
    "log_every=1",
    "--set",
    "eval_every=3",
    "--set",
    "eval_batches=2",
    "--set",
    "precision=fp32",
    "--set",
    "model.n_layers=2",
    "--set",
    "model.dim=64",
    "--set",
    "model.n_heads=4",
    "--set",
    "model.n_kv_heads=2",
]


def train(*args: str) -> tuple[str, list[dict]]:
    out = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "train", *COMMON, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run = resolve_run(out.stdout.splitlines()[0])
    return run.id, EventReader(run.events_path).read_new()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch():
    _, single = train("--set", "micro_batch=4")
    run_id, ddp = train("--set", "micro_batch=2", "--nproc", "2")
    losses = [r["loss"] for r in single if r["type"] == "metric"]
    ddp_losses = [r["loss"] for r in ddp if r["type"] == "metric"]
    assert len(losses) == len(ddp_losses) == 6
    assert ddp_losses == pytest.approx(losses, rel=1e-4)
    assert losses[-1] < losses[0] - 0.05  # the comparison is over steps that actually learn
    val = [r["val_loss"] for r in single if r["type"] == "eval"]
    assert [r["val_loss"] for r in ddp if r["type"] == "eval"] == pytest.approx(val, rel=1e-4)
    info = next(r for r in ddp if r["type"] == "run_info")
    assert info["device"] == "cpu x2" and info["tokens_per_step"] == 4 * 32
    # One writer: rank 0 alone wrote events and checkpoints.
    assert [r["step"] for r in ddp if r["type"] == "metric"] == list(range(1, 7))
    assert resolve_run(run_id).read_meta().status == "finished"


@pytest.mark.slow
def test_fsdp_matches_one_process_and_its_checkpoints_resume_exactly():
    flat = ["--set", "min_lr_ratio=1", "--set", "warmup_steps=0"]  # lr independent of the run length
    _, single = train("--set", "micro_batch=4", *flat)
    run_id, fsdp = train("--set", "micro_batch=2", "--set", "distributed=fsdp", "--nproc", "2", *flat)
    losses = [r["loss"] for r in single if r["type"] == "metric"]
    assert [r["loss"] for r in fsdp if r["type"] == "metric"] == pytest.approx(losses, rel=1e-4)
    # The checkpoint holds the full, unsharded model.
    from safetensors import safe_open

    run = resolve_run(run_id)
    with safe_open(str(run.checkpoints_dir / "step-000006" / "model.safetensors"), "pt") as f:
        assert tuple(f.get_tensor("model.layers.0.mlp.gate_proj.weight").shape) == (256, 64)
    # Stop after 3 steps, then resume the sharded run to 6: the same losses as straight through.
    short_id, _ = train(
        "--set", "micro_batch=2", "--set", "distributed=fsdp", "--nproc", "2", *flat, "--set", "max_steps=3"
    )
    short = resolve_run(short_id)
    # As if stopped at step 3 (a real stop cannot be timed in 3 tiny steps).
    short.update_meta(config={**short.read_meta().config, "max_steps": 6}, status="stopped")
    out = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "resume", short_id, "-f"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    records = EventReader(short.events_path).read_new()
    resumed = {r["step"]: r["loss"] for r in records if r["type"] == "metric"}
    straight = {r["step"]: r["loss"] for r in fsdp if r["type"] == "metric"}
    assert resumed == straight
