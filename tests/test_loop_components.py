"""The shared loop assembled from small components, with a toy model: the one update step, the
step/metric/eval/checkpoint order, and exact resume, without any run kind's model or data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.config.loop import LoopConfig
from engine.runs.events import to_record
from engine.train.checkpoint import TrainerState
from engine.train.checkpointer import Checkpointer, TrainingStopped
from engine.train.loop import DistInfo, LoopParts, TrainingLoop, run_guarded
from engine.train.optim import CosineSchedule
from engine.train.precision import Precision
from engine.train.progress import Progress
from engine.train.recorder import RunRecorder
from engine.train.update import OptimizerUpdate

FP32 = Precision("fp32", "cpu", "test")


class ToyLoader:
    """Batch ``i`` is a pure function of ``i``: resuming means restoring the position only."""

    batches_per_epoch = 5

    def __init__(self) -> None:
        self.epoch = self.step = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.epoch * 1000 + self.step)
        self.step += 1
        if self.step == self.batches_per_epoch:
            self.epoch, self.step = self.epoch + 1, 0
        x = torch.randn(4, 3, generator=g)
        return x, x.sum(1, keepdim=True)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = state["epoch"], state["step"]


class Toy:
    """A run kind in miniature: builds its components and the loop the way the real kinds do."""

    def __init__(self, root: Path, cfg: LoopConfig, *, stop_at: int = 0, poison: set[int] = frozenset()):
        self.root, self.cfg, self.stop_at, self.poison = root, cfg, stop_at, poison
        self.events: list[tuple[str, dict]] = []
        self.recorder = RunRecorder(None, observer=lambda e: self.events.append((e.type, to_record(e))))
        self.checkpointer = Checkpointer(root / "checkpoints", cfg.keep_checkpoints, self.recorder)

    def assemble(self, resume: bool = False) -> TrainingLoop:
        cfg = self.cfg
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)
        self.loader = ToyLoader()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr)
        self.update = OptimizerUpdate(
            self.optimizer, self.model.parameters(), grad_clip=cfg.grad_clip, precision=FP32
        )
        schedule = CosineSchedule(cfg.lr, cfg.max_steps, 2, cfg.min_lr_ratio)
        progress = Progress()
        if resume:
            path = self.checkpointer.last()
            saved = torch.load(path / "toy.pt", weights_only=False)
            self.model.load_state_dict(saved["model"])
            state = TrainerState(**saved["state"])
            self.optimizer.load_state_dict(state.optimizer)
            progress = Progress.resume(state, self.update, self.loader)
        parts = LoopParts(
            device=torch.device("cpu"),
            optimizer=self.optimizer,
            schedule=schedule,
            update=self.update,
            loader=self.loader,
            total=cfg.max_steps,
            train_step=self.train_step,
            evaluate=self.evaluate,
            write_checkpoint=self.write,
        )
        self.loop = TrainingLoop(
            cfg,
            parts,
            progress,
            recorder=self.recorder,
            checkpointer=self.checkpointer,
            control=lambda: (self.loop.progress.step == self.stop_at, False),
            dist_info=DistInfo(),
        )
        return self.loop

    def train_step(self):
        x, y = self.loader.next_batch()
        loss = nn.functional.mse_loss(self.model(x), y)
        if self.loop.progress.step + 1 in self.poison:
            loss = loss * float("nan")
        self.update.backward(loss)
        return self.update(loss.detach(), 12, 4)

    @torch.no_grad()
    def evaluate(self) -> float:
        x = torch.linspace(-1, 1, 12).reshape(4, 3)
        return nn.functional.mse_loss(self.model(x), x.sum(1, keepdim=True)).item()

    def write(self, folder: Path, state: TrainerState, weights) -> None:
        torch.save({"model": self.model.state_dict(), "state": state.__dict__}, folder / "toy.pt")

    def of(self, kind: str) -> list[dict]:
        return [f for t, f in self.events if t == kind]


def config(**overrides) -> LoopConfig:
    base = dict(max_steps=8, lr=0.05, log_every=1, eval_every=4, checkpoint_every=4, keep_checkpoints=5)
    return LoopConfig(**{**base, **overrides}).validate()


def test_the_update_step_applies_clipped_adamw_and_refuses_a_non_finite_one():
    torch.manual_seed(0)
    model, twin = nn.Linear(3, 1), nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    opt, twin_opt = (torch.optim.AdamW(m.parameters(), lr=0.1) for m in (model, twin))
    update = OptimizerUpdate(opt, model.parameters(), grad_clip=0.5, precision=FP32)
    x = torch.randn(4, 3)
    loss = (model(x) * 100).pow(2).mean()  # a gradient far above the clip
    update.backward(loss)
    result = update(loss.detach(), 12, 4)
    (twin(x) * 100).pow(2).mean().backward()
    norm = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
    twin_opt.step()
    assert result.applied and result.grad_norm == pytest.approx(norm.item()) and result.grad_norm > 0.5
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())  # zeroed for the next step
    before = [p.detach().clone() for p in model.parameters()]
    bad = model(x).sum() * float("nan")
    update.backward(bad)
    refused = update(bad.detach(), 12, 4)
    assert not refused.applied and math.isnan(refused.loss)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_the_loop_logs_evaluates_checkpoints_and_marks_the_best(tmp_path):
    toy = Toy(tmp_path, config())
    toy.assemble().run()
    metrics = toy.of("metric")
    assert [m["step"] for m in metrics] == list(range(1, 9)) and metrics[-1]["tokens"] == 8 * 12
    assert metrics[0]["epoch"] == pytest.approx(0.2) and metrics[5]["epoch"] == pytest.approx(1.2)
    assert [e["step"] for e in toy.of("eval")] == [4, 8]
    marks = [(c["step"], c["kind"]) for c in toy.of("checkpoint")]
    assert marks == [(4, "last"), (4, "best"), (8, "last"), (8, "best")]
    last = json.loads((tmp_path / "checkpoints" / "last.json").read_text())
    saved = torch.load(tmp_path / "checkpoints" / last["dir"] / "toy.pt", weights_only=False)["state"]
    assert last["step"] == 8 and (saved["step"], saved["tokens"], saved["loader"]) == (
        8,
        96,
        {"epoch": 1, "step": 3},
    )
    assert toy.loop.progress.best_val == toy.of("eval")[-1]["val_loss"]


def test_a_stopped_and_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    straight = Toy(tmp_path / "a", config())
    straight.assemble().run()
    stopped = Toy(tmp_path / "b", config(checkpoint_every=0), stop_at=3)
    stopped.assemble().run()
    assert stopped.loop.progress.step == 3 and [c["step"] for c in stopped.of("checkpoint")] == [3]
    resumed = Toy(tmp_path / "b", config(checkpoint_every=0))
    resumed.assemble(resume=True).run()
    assert resumed.loop.progress.resumed_from == 3
    assert [m["loss"] for m in resumed.of("metric")] == [m["loss"] for m in straight.of("metric")][3:]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_non_finite_steps_are_skipped_counted_then_stop_the_run(tmp_path):
    toy = Toy(tmp_path, config(max_nonfinite=2), poison={2, 5, 6})
    with pytest.raises(
        TrainingStopped, match=r"not finite for 2 steps in a row \(max_nonfinite=2\) at step 6"
    ):
        run_guarded(
            toy.cfg,
            toy.recorder,
            setup=toy.assemble,
            before_first_step=lambda: None,
            oom_advice=lambda: "",
            device=lambda: None,
        )
    assert [m["skipped"] for m in toy.of("metric")] == [0, 1, 1, 1, 2, 3]
    assert toy.loop.progress.nonfinite_streak == 2


def test_out_of_memory_names_the_step_the_batch_and_the_advice(tmp_path):
    toy = Toy(tmp_path, config(micro_batch=4, seq_len=32))
    loop = toy.assemble()

    def oom():
        if loop.progress.step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return Toy.train_step(toy)

    loop.parts.train_step = oom
    with pytest.raises(TrainingStopped) as err:
        run_guarded(
            toy.cfg,
            toy.recorder,
            setup=lambda: loop,
            before_first_step=lambda: None,
            oom_advice=lambda: "lower micro_batch.",
            device=lambda: None,
        )
    assert str(err.value) == (
        "out of memory at step 3 with micro_batch=4 and seq_len=32. Fix: lower micro_batch. "
        "The last checkpoint is intact."
    )


def test_the_observer_gets_decoded_events_and_the_demo_prints_warnings_with_the_one_formatter():
    """The in-process observer (the demo's printer) reads the same decoded events as every reader
    of a run directory, and shows a warning the way `canvas logs` does: one plain line."""
    from engine.demo import _Printer

    lines: list[str] = []
    printer = _Printer(lines.append, log_every=2, summary=lambda: "data: tiny", batch="2 x 8 tokens")
    recorder = RunRecorder(None, observer=printer)
    recorder.emit("run_info", params=1234, precision="fp32", device="cpu", total_steps=2, config={})
    recorder.emit("metric", step=1, loss=3.0, lr=1e-3, step_time=0.25, tokens=16)
    recorder.emit("metric", step=2, loss=2.0, lr=1e-3, step_time=0.25, tokens=32)
    recorder.emit("eval", step=2, val_loss=2.5, perplexity=math.exp(2.5))
    recorder.log("disk almost full\n\x1b[2J", "warning")
    recorder.log("a quiet line", "info")
    assert lines == [
        "data: tiny",
        "training the tiny model (1,234 parameters) for 2 steps on cpu in fp32, batch 2 x 8 tokens",
        "step     2/2  loss 2.000  lr 1.00e-03  64 tok/s",
        "warning: disk almost full\ufffd\ufffd[2J",
    ]
    assert (printer.losses, printer.val_loss, printer.precision) == ([3.0, 2.0], 2.5, "fp32")
