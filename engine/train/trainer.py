"""Pre-training: our Llama-style model's components assembled and handed to the shared loop.

The pieces live in their own modules (precision, optimizer and schedule, update step, checkpoints,
data loader, model); this file builds them for a pre-training run, supplies the step (micro-batches
with gradient accumulation, DDP or FSDP), validation and the checkpoint's files, and gives them to
:class:`engine.train.loop.TrainingLoop`, which owns the order of operations exact resume needs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from engine.config.errors import ConfigError
from engine.config.train import TrainConfig
from engine.data import TokenizerConfig, prepare
from engine.data.loader import TokenLoader
from engine.data.progress import DataProgress
from engine.data.tokenizer import export_tokenizer
from engine.model.llama import CausalLM
from engine.runs.session import EngineSession
from engine.train.base import LoopTrainer
from engine.train.checkpoint import TrainerState, load_checkpoint, write_model_files
from engine.train.flops import mfu, peak_flops
from engine.train.loop import (
    DistInfo,
    LoopParts,
    StepResult,
    TrainingLoop,
    TrainingStopped,
    pick_device,
)
from engine.train.optim import CosineSchedule, auto_warmup, build_optimizer
from engine.train.parallel import full_state, gradient_sync, load_full_state, shard_fsdp, wrap_ddp
from engine.train.precision import Precision, choose_precision
from engine.train.progress import Progress
from engine.train.recorder import Observer
from engine.train.sampler import Sampler, build_sampler
from engine.train.update import OptimizerUpdate

__all__ = ["DistInfo", "Trainer", "TrainingStopped", "pick_device", "total_steps"]


def total_steps(cfg: TrainConfig, batches_per_epoch: int, accum: int, world: int) -> int:
    """The run's length from whichever of max_steps, max_tokens, epochs is set (in that order)."""
    if cfg.max_steps:
        return cfg.max_steps
    per_step = cfg.micro_batch * cfg.seq_len * accum * world
    if cfg.max_tokens:
        return max(1, math.ceil(cfg.max_tokens / per_step))
    if cfg.epochs:
        return max(1, math.ceil(cfg.epochs * batches_per_epoch / accum))
    raise ConfigError("max_steps", "no run length: set one of max_steps, max_tokens or epochs.")


class Trainer(LoopTrainer):
    """Pre-training of our own Llama-style model (see :mod:`engine.train.loop` for the loop).

    ``observer`` sees every event rank 0 emits as it happens and ``data_progress`` every data
    preparation snapshot: what a foreground front end (the demo) prints from.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        session: EngineSession | None,
        *,
        resume: bool = False,
        dist_info: DistInfo | None = None,
        observer: Observer | None = None,
        data_progress: Callable[[DataProgress], None] | None = None,
    ) -> None:
        super().__init__(
            cfg.validate(), run_dir, session, resume=resume, dist_info=dist_info, observer=observer
        )
        self.data_progress = data_progress

    def _data_progress(self) -> Callable[[DataProgress], None]:
        last = [0.0]

        def report(p: DataProgress) -> None:
            if self.data_progress is not None:
                self.data_progress(p)
            now = time.monotonic()
            if p.stage != "done" and now - last[0] < 0.5:
                return
            last[0] = now
            if p.bytes_done or p.bytes_total or not (p.documents or p.tokens):
                done, total, unit = p.bytes_done, p.bytes_total or None, "bytes"
                rate = p.mb_per_s * 1e6 if p.mb_per_s else None
            else:  # stages that count documents or tokens, not bytes (loading, the tokenizer)
                done, total, unit = (
                    (p.tokens, None, "tokens") if p.tokens else (p.documents, None, "documents")
                )
                rate = done / p.elapsed_s if p.elapsed_s > 0 else None
            self.recorder.emit(
                "progress",
                phase=f"data: {p.stage}",
                done=done,
                total=total,
                unit=unit,
                rate=rate,
                eta=p.eta_s,
            )

        return report

    # ------------------------------------------------------------------------------ set-up
    def _prepare_data(self):
        cfg = self.cfg
        tok = TokenizerConfig(vocab_size=cfg.vocab_size, pretrained=cfg.tokenizer or None)
        if self.dist.world_size > 1 and not self.dist.is_main:
            dist.barrier()  # rank 0 fills the cache first; the others then read it
            return prepare(cfg.data, tok, val_fraction=cfg.val_fraction, seed=cfg.seed)
        prepared = prepare(
            cfg.data, tok, val_fraction=cfg.val_fraction, seed=cfg.seed, progress=self._data_progress()
        )
        if self.dist.world_size > 1:
            dist.barrier()
        return prepared

    def setup(self) -> TrainingLoop:
        """Build every component (in the order exact resume depends on) and the loop over them."""
        cfg, d = self.cfg, self.dist
        device = self.start_device()
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        self.precision: Precision = choose_precision(cfg.precision, device)
        self.prepared = self._prepare_data()
        if d.is_main and not (self.run_dir / "tokenizer" / "tokenizer.json").is_file():
            export_tokenizer(self.prepared.tokenizer_dir, self.run_dir / "tokenizer")
        model_cfg = replace(
            cfg.model,
            vocab_size=self.prepared.vocab_size,
            max_seq_len=max(cfg.model.max_seq_len, cfg.seq_len),
        )
        torch.manual_seed(cfg.seed)
        self.model = CausalLM(model_cfg).to(device)
        self.model.activation_checkpointing = cfg.activation_checkpointing
        self.n_params = self.model.num_params()
        self.fsdp = d.world_size > 1 and cfg.distributed == "fsdp"
        if self.fsdp:
            shard_fsdp(self.model, device)  # before the optimizer: it must see the shards
        self.loader = TokenLoader(
            self.prepared.train,
            cfg.seq_len,
            cfg.micro_batch,
            seed=cfg.seed,
            rank=d.rank,
            world_size=d.world_size,
            device=device,
        )
        self.accum = cfg.accumulation(d.world_size)
        self.tokens_per_step = cfg.micro_batch * cfg.seq_len * self.accum * d.world_size
        total = total_steps(cfg, self.loader.batches_per_epoch, self.accum, d.world_size)
        warmup = auto_warmup(total) if cfg.warmup_steps < 0 else cfg.warmup_steps
        self.schedule = CosineSchedule(cfg.lr, total, warmup, cfg.min_lr_ratio)
        self.optimizer = build_optimizer(
            self.model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), device.type
        )
        self.update = OptimizerUpdate(
            self.optimizer,
            self.model.parameters(),
            grad_clip=cfg.grad_clip,
            precision=self.precision,
            world_size=d.world_size,
        )
        if self.resume:
            progress = self._restore()
        else:
            progress = Progress()
            torch.manual_seed(cfg.seed + d.rank)
        self.compiled = cfg.compile_enabled(device.type)
        step_model: Any = self.model
        if self.compiled:
            step_model = torch.compile(step_model)
        if d.world_size > 1 and not self.fsdp:
            step_model = wrap_ddp(step_model, device)
        self.step_model = step_model
        if d.is_main:
            self.recorder.update_meta(total_steps=total)
            self.recorder.open_tensorboard(self.run_dir, progress.step)
            self.recorder.emit(
                "run_info",
                config=cfg.to_dict(),
                params=self.n_params,
                precision=self.precision.name,
                precision_reason=self.precision.reason,
                device=str(device) + (f" x{d.world_size}" if d.world_size > 1 else ""),
                total_steps=total,
                tokens_per_step=self.tokens_per_step,
                compiled=self.compiled,
                resumed_from=progress.resumed_from,
            )
            self.recorder.log(
                f"{self.n_params:,} parameters, {self.precision.name} "
                f"({self.precision.reason}), {total} steps of {self.tokens_per_step:,} tokens "
                f"on {device}" + (f" x {d.world_size} ranks ({cfg.distributed})" if d.world_size > 1 else "")
            )
        self.val_loader_ok = self.prepared.val is not None
        self.flops_per_token = model_cfg.flops_per_token(cfg.seq_len)
        on_gpu = device.type == "cuda"
        self.peak = peak_flops(torch.cuda.get_device_name(device)) if on_gpu else None
        self.model.train()
        parts = LoopParts(
            device=device,
            optimizer=self.optimizer,
            schedule=self.schedule,
            update=self.update,
            loader=self.loader,
            total=total,
            train_step=self.train_step,
            evaluate=self.evaluate,
            write_checkpoint=self.write_checkpoint,
            gather_checkpoint=self.gather_checkpoint,
            mfu=lambda rate: mfu(self.flops_per_token, rate, self.peak, d.world_size),
            sample=self._sampler(),
        )
        return self.assemble(parts, progress)

    def _sampler(self) -> Sampler | None:
        """The ``sample_every`` sampler (rank 0 only; None when off): see :mod:`engine.train.sampler`."""
        if not self.dist.is_main:
            return None
        return build_sampler(self.cfg, self.model, self.prepared, self.recorder, sharded=self.fsdp)

    def _restore(self) -> Progress:
        path, (weights, state) = self.checkpointer.load(lambda p: load_checkpoint(p, self.model))
        load_full_state(
            self.model, self.optimizer, weights, state.optimizer, self.cfg.distributed, self.dist.world_size
        )
        progress = Progress.resume(state, self.update, self.loader)
        self.recorder.log(f"resumed from {path.name} (step {state.step})")
        return progress

    # ------------------------------------------------------------------------------ components
    def gather_checkpoint(self) -> tuple[dict | None, dict] | None:
        if self.fsdp:  # gathering the shards is collective: every rank takes part
            return full_state(self.model, self.optimizer, "fsdp", self.dist.world_size)
        return None

    def write_checkpoint(self, directory: Path, state: TrainerState, weights: dict | None) -> None:
        write_model_files(directory, self.model, state, weights)

    def oom_advice(self) -> str:
        cfg = self.cfg
        accum = getattr(self, "accum", cfg.grad_accum)
        return (
            f"lower micro_batch (e.g. --set micro_batch={max(1, cfg.micro_batch // 2)} --set "
            f"grad_accum={accum * 2} keeps the tokens per step), lower seq_len, or set "
            "activation_checkpointing=true."
        )

    def train_step(self) -> StepResult:
        """One optimizer step over ``accum`` micro-batches."""
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            x, y = self.loader.next_batch()
            last = micro == self.accum - 1
            with gradient_sync(self.step_model, self.cfg.distributed, self.dist.world_size, last):
                with self.precision.autocast():
                    loss = self.step_model(x, y) / self.accum
                self.update.backward(loss)
            loss_sum += loss.detach()
        samples = self.cfg.micro_batch * self.accum * self.dist.world_size
        return self.update(loss_sum, self.tokens_per_step, samples)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if not self.val_loader_ok:
            return None
        cfg = self.cfg
        try:
            val = TokenLoader(
                self.prepared.val,
                cfg.seq_len,
                cfg.micro_batch,
                seed=cfg.seed,
                shuffle=False,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                device=self.device,
            )
        except ConfigError:
            self.val_loader_ok = False
            self.recorder.log(
                "the validation split is smaller than one batch: validation is off for this run. "
                "Fix: raise val_fraction or use more data.",
                level="warning",
            )
            return None
        self.model.eval()
        n = min(cfg.eval_batches, val.batches_per_epoch)
        total = torch.zeros((), device=self.device)
        for _ in range(n):
            x, y = val.next_batch()
            with self.precision.autocast():
                total += self.model(x, y).float()
        if self.dist.world_size > 1:
            dist.all_reduce(total)
            total /= self.dist.world_size
        self.model.train()
        return (total / n).item()
