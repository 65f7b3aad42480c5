"""The loop's components: schedule, weight-decay groups, run length, checkpoint layout and pruning."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config.train import load_train_config
from engine.train.layout import list_checkpoints, resolve_checkpoint
from engine.train.optim import CosineSchedule, auto_warmup, param_groups
from engine.train.trainer import total_steps
from tests.helpers import random_model


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    s = CosineSchedule(lr=1.0, total=110, warmup=10, min_ratio=0.1)
    assert [s.at(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert s.at(9) == pytest.approx(1.0) and s.at(10) == pytest.approx(1.0)
    assert s.at(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: the cosine's mid-point
    assert s.at(110) == pytest.approx(0.1) and s.at(500) == pytest.approx(0.1)
    assert auto_warmup(100_000) == 1000 and auto_warmup(100) == 5


@pytest.mark.parametrize("tie", [False, True])
def test_no_weight_decay_on_norms_and_embeddings(tie):
    model = random_model(tie_embeddings=tie)
    decay, no_decay = param_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    assert not any("norm" in names[i] or "embed_tokens" in names[i] for i in decayed)
    assert all(p.dim() == 1 or p is model.model.embed_tokens.weight for p in no_decay["params"])
    assert (id(model.lm_head.weight) in decayed) == (not tie)
    total = sum(p.numel() for p in decay["params"]) + sum(p.numel() for p in no_decay["params"])
    assert total == model.num_params() and no_decay["weight_decay"] == 0.0


def test_run_length_from_steps_tokens_or_epochs():
    cfg = load_train_config("tiny", sets=["max_tokens=1e6", "micro_batch=4", "seq_len=128", "grad_accum=2"])
    assert total_steps(cfg, batches_per_epoch=1000, accum=2, world=1) == math.ceil(1e6 / (4 * 128 * 2))
    cfg = load_train_config("tiny", sets=["epochs=30"])
    assert total_steps(cfg, batches_per_epoch=100, accum=4, world=1) == 750  # 30 x 100 / 4
    cfg = load_train_config("tiny", sets=["max_steps=9", "epochs=30"])
    assert total_steps(cfg, batches_per_epoch=100, accum=1, world=1) == 9
    assert load_train_config("tiny", sets=["tokens_per_step=8192"]).accumulation(world_size=2) == 2


def test_checkpoint_layout_survives_an_interrupted_write(tmp_path, monkeypatch):
    from engine.train.checkpoint import TrainerState, prune_checkpoints, save_checkpoint, set_pointer

    model = random_model()
    opt = torch.optim.AdamW(model.parameters())

    def state(step):
        return TrainerState(
            step=step,
            tokens=step,
            optimizer=opt.state_dict(),
            scaler={},
            schedule={},
            loader={},
            rng={},
            best_val=math.inf,
            nonfinite_streak=0,
            skipped_steps=0,
        )

    ckpts = tmp_path / "checkpoints"
    for step in (10, 20, 30):
        save_checkpoint(ckpts, model, state(step))
    set_pointer(ckpts, "best", ckpts / "step-000010", 10, 1.5)
    # A write killed half-way (as after kill -9) leaves only a temporary directory behind...
    half = ckpts / ".step-000040.1234.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)
    # ...and a save that fails part-way removes its own temporary files.
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(ckpts, model, state(50))
    assert [s for s, _ in list_checkpoints(ckpts)] == [10, 20, 30]
    assert resolve_checkpoint(ckpts, "last").name == "step-000030"
    assert resolve_checkpoint(ckpts, "best").name == "step-000010"
    assert not (ckpts / "step-000050").exists() and not list(ckpts.glob(".step-000050*"))
    # Retention keeps the newest and whatever best/last point at.
    removed = prune_checkpoints(ckpts, keep=1)
    assert [p.name for p in removed] == ["step-000020"]
    assert [s for s, _ in list_checkpoints(ckpts)] == [10, 30]
