"""Guard rails, in process: a diverging loss and an out-of-memory error stop the run clearly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine.config.train import load_train_config
from engine.model.llama import CausalLM
from engine.runs.reader import EventReader
from engine.train.launch import create_training_run
from engine.train.trainer import Trainer
from engine.train.worker import run_training

#: The embedded corpus is prepared once per session (tests/conftest.py); each test keeps its own runs.
pytestmark = pytest.mark.usefixtures("shared_cache")

SETS = [
    "micro_batch=2",
    "seq_len=32",
    "log_every=1",
    "eval_every=1000",
    "eval_batches=1",
    "model.n_layers=2",
    "model.dim=64",
    "model.n_heads=4",
    "model.n_kv_heads=2",
]


def make_run(*extra: str):
    return create_training_run(load_train_config("tiny", sets=[*SETS, *extra]))


def records(run, kind):
    return [r for r in EventReader(run.events_path).read_new() if r["type"] == kind]


def test_non_finite_losses_are_skipped_then_stop_the_run(monkeypatch):
    run = make_run("max_steps=20", "checkpoint_every=2", "max_nonfinite=3")
    real_forward = CausalLM.forward
    calls = {"n": 0}

    def forward(self, tokens, targets=None, **kw):
        out = real_forward(self, tokens, targets, **kw)
        if targets is not None and self.training:
            calls["n"] += 1
            if calls["n"] in (3,) or calls["n"] >= 6:  # one lone NaN, then a streak
                return out * float("nan")
        return out

    monkeypatch.setattr(CausalLM, "forward", forward)
    run_training(run, install_signals=False)
    meta = run.read_meta()
    assert meta.status == "failed"
    assert "not finite for 3 steps in a row (max_nonfinite=3) at step 8" in meta.message
    assert "Fix: lower lr" in meta.message
    metrics = records(run, "metric")
    assert [m["skipped"] for m in metrics] == [0, 0, 1, 1, 1, 2, 3, 4]
    assert metrics[2]["loss"] == "nan" and math.isfinite(metrics[3]["loss"])  # JSON has no NaN
    warnings = [r for r in records(run, "log") if r["level"] == "warning"]
    assert len(warnings) == 4 and "update skipped" in warnings[0]["message"]
    # The weights were never touched by a non-finite update: every checkpoint is finite.
    last = json.loads((run.checkpoints_dir / "last.json").read_text())
    assert last["step"] <= 8
    from safetensors.torch import load_file

    weights = load_file(str(run.checkpoints_dir / last["dir"] / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_out_of_memory_names_the_batch_and_what_to_lower(monkeypatch):
    run = make_run("max_steps=10", "checkpoint_every=2", "micro_batch=4", "grad_accum=2")
    real_step = Trainer.train_step

    def step(self):
        if self.step == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    run_training(run, install_signals=False)
    meta = run.read_meta()
    assert meta.status == "failed"
    msg = meta.message
    assert "out of memory at step 5 with micro_batch=4 and seq_len=32" in msg
    assert "--set micro_batch=2 --set grad_accum=4" in msg and "activation_checkpointing=true" in msg
    assert json.loads((run.checkpoints_dir / "last.json").read_text())["step"] == 4


def test_resume_without_a_checkpoint_is_refused_clearly():
    run = make_run("max_steps=5")
    run_training(run, resume=True, install_signals=False)
    meta = run.read_meta()
    assert meta.status == "failed" and "holds no checkpoint" in meta.message


def test_activation_checkpointing_gives_the_same_gradients():
    from tests.helpers import random_model

    model = random_model().train()
    x = torch.randint(0, 256, (2, 24))
    model(x, x).backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing = True
    model(x, x).backward()
    for a, p in zip(plain, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


@pytest.mark.parametrize("precision", ["fp16"])
def test_fp16_on_cpu_is_refused_by_name(precision):
    run = make_run("max_steps=2", f"precision={precision}")
    run_training(run, install_signals=False)
    meta = run.read_meta()
    assert meta.status == "failed" and "precision = fp16 is for GPUs" in meta.message
