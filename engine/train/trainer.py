"""The pre-training loop: components assembled, one step at a time, with the run's bookkeeping.

The pieces live in their own modules (precision, optimizer and schedule, checkpoints, data
loader, model); this file wires them and owns the order of operations that exact resume depends
on: a checkpoint at step S is taken after step S's update, logging and evaluation, so a resumed
run continues with step S + 1 from exactly the state an uninterrupted run had.
"""

from __future__ import annotations

import math
import os
import time
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
from engine.train.checkpoint import (
    load_checkpoint,
    write_model_files,
)
from engine.train.flops import mfu, peak_flops
from engine.train.loop import DistInfo, StepResult, TrainingLoop, TrainingStopped, pick_device
from engine.train.optim import CosineSchedule, auto_warmup, build_optimizer
from engine.train.parallel import full_state, gradient_sync, load_full_state, plain, shard_fsdp, wrap_ddp
from engine.train.precision import Precision, choose_precision, enable_fast_matmul

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


class Trainer(TrainingLoop):
    """Pre-training of our own Llama-style model (see :mod:`engine.train.loop` for the loop)."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        session: EngineSession | None,
        *,
        resume: bool = False,
        dist_info: DistInfo | None = None,
    ) -> None:
        super().__init__(cfg, run_dir, session, resume=resume, dist_info=dist_info)

    def _data_progress(self) -> Any:
        last = [0.0]

        def report(p: DataProgress) -> None:
            now = time.monotonic()
            if p.stage != "done" and now - last[0] < 0.5:
                return
            last[0] = now
            self.emit(
                "progress",
                phase=f"data: {p.stage}",
                done=p.bytes_done,
                total=p.bytes_total or None,
                unit="bytes",
                rate=p.mb_per_s * 1e6 if p.mb_per_s else None,
                eta=p.eta_s,
            )

        return report

    # ------------------------------------------------------------------------------ set-up
    def _prepare_data(self):
        cfg = self.cfg
        tok = TokenizerConfig(vocab_size=cfg.vocab_size, pretrained=cfg.tokenizer or None)
        kwargs = dict(val_fraction=cfg.val_fraction, seed=cfg.seed)
        if self.dist.world_size > 1 and not self.dist.is_main:
            dist.barrier()  # rank 0 fills the cache first; the others then read it
            return prepare(cfg.data, tok, **kwargs)
        prepared = prepare(cfg.data, tok, progress=self._data_progress(), **kwargs)
        if self.dist.world_size > 1:
            dist.barrier()
        return prepared

    def setup(self) -> None:
        cfg, d = self.cfg, self.dist
        self.device = pick_device(cfg.device, d)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            enable_fast_matmul()
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        self.precision: Precision = choose_precision(cfg.precision, self.device)
        self.prepared = self._prepare_data()
        if d.is_main and not (self.run_dir / "tokenizer" / "tokenizer.json").is_file():
            export_tokenizer(self.prepared.tokenizer_dir, self.run_dir / "tokenizer")
        model_cfg = replace(
            cfg.model,
            vocab_size=self.prepared.vocab_size,
            max_seq_len=max(cfg.model.max_seq_len, cfg.seq_len),
        )
        torch.manual_seed(cfg.seed)
        self.model = CausalLM(model_cfg).to(self.device)
        self.model.activation_checkpointing = cfg.activation_checkpointing
        self.n_params = self.model.num_params()
        self.fsdp = d.world_size > 1 and cfg.distributed == "fsdp"
        if self.fsdp:
            shard_fsdp(self.model, self.device)  # before the optimizer: it must see the shards
        self.loader = TokenLoader(
            self.prepared.train,
            cfg.seq_len,
            cfg.micro_batch,
            seed=cfg.seed,
            rank=d.rank,
            world_size=d.world_size,
            device=self.device,
        )
        self.accum = cfg.accumulation(d.world_size)
        self.tokens_per_step = cfg.micro_batch * cfg.seq_len * self.accum * d.world_size
        self.total = total_steps(cfg, self.loader.batches_per_epoch, self.accum, d.world_size)
        warmup = auto_warmup(self.total) if cfg.warmup_steps < 0 else cfg.warmup_steps
        self.schedule = CosineSchedule(cfg.lr, self.total, warmup, cfg.min_lr_ratio)
        self.optimizer = build_optimizer(
            self.model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), self.device.type
        )
        self.scaler = self.precision.grad_scaler()
        self.start_progress()
        if self.resume:
            self._restore()
        else:
            torch.manual_seed(cfg.seed + d.rank)
        self.compiled = cfg.compile_enabled(self.device.type)
        step_model: Any = self.model
        if self.compiled:
            step_model = torch.compile(step_model)
        if d.world_size > 1 and not self.fsdp:
            step_model = wrap_ddp(step_model, self.device)
        self.step_model = step_model
        if d.is_main:
            self.session and self.session.run.update_meta(total_steps=self.total)
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step + 1 if self.step else None)
            self.emit(
                "run_info",
                config=cfg.to_dict(),
                params=self.n_params,
                precision=self.precision.name,
                precision_reason=self.precision.reason,
                device=str(self.device) + (f" x{d.world_size}" if d.world_size > 1 else ""),
                total_steps=self.total,
                tokens_per_step=self.tokens_per_step,
                compiled=self.compiled,
                resumed_from=self.resumed_from,
            )
            self.log(
                f"{self.n_params:,} parameters, {self.precision.name} "
                f"({self.precision.reason}), {self.total} steps of {self.tokens_per_step:,} tokens "
                f"on {self.device}"
                + (f" x {d.world_size} ranks ({cfg.distributed})" if d.world_size > 1 else "")
            )
        self.val_loader_ok = self.prepared.val is not None
        self.flops_per_token = model_cfg.flops_per_token(cfg.seq_len)
        on_gpu = self.device.type == "cuda"
        self.peak = peak_flops(torch.cuda.get_device_name(self.device)) if on_gpu else None
        self.model.train()

    def _restore(self) -> None:
        path = self.last_checkpoint()
        weights, state = load_checkpoint(path, self.model)
        load_full_state(
            self.model, self.optimizer, weights, state.optimizer, self.cfg.distributed, self.dist.world_size
        )
        self.restore_progress(path, state, self.loader)

    # ------------------------------------------------------------------------------ the loop
    def gather_checkpoint(self) -> tuple[dict | None, dict] | None:
        if self.fsdp:  # gathering the shards is collective: every rank takes part
            return full_state(self.model, self.optimizer, "fsdp", self.dist.world_size)
        return None

    def write_checkpoint_files(self, directory: Path, gathered: Any) -> None:
        weights, optim = gathered if gathered is not None else (None, self.optimizer.state_dict())
        write_model_files(directory, self.model, self.progress_state(optim, self.loader), weights)

    def oom_advice(self) -> str:
        cfg = self.cfg
        return (
            f"lower micro_batch (e.g. --set micro_batch={max(1, cfg.micro_batch // 2)} --set "
            f"grad_accum={self.accum * 2} keeps the tokens per step), lower seq_len, or set "
            "activation_checkpointing=true."
        )

    def epoch_progress(self) -> float:
        return self.loader.epoch + self.loader.step / self.loader.batches_per_epoch

    def mfu(self, tokens_per_s: float) -> float | None:
        return mfu(self.flops_per_token, tokens_per_s, self.peak, self.dist.world_size)

    def train_step(self) -> StepResult:
        """One optimizer step over ``accum`` micro-batches."""
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            x, y = self.loader.next_batch()
            last = micro == self.accum - 1
            with gradient_sync(self.step_model, self.cfg.distributed, self.dist.world_size, last):
                with self.precision.autocast():
                    loss = self.step_model(x, y) / self.accum
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        )
        if self.dist.world_size > 1:
            dist.all_reduce(loss_sum)  # SUM: gloo has no AVG
            loss_sum /= self.dist.world_size
        loss_value, norm_value = loss_sum.item(), plain(norm).item()
        fp16_overflow = self.precision.name == "fp16" and math.isfinite(loss_value)
        applied = math.isfinite(loss_value) and (math.isfinite(norm_value) or fp16_overflow)
        if applied:
            self.scaler.step(self.optimizer)  # skips by itself on an fp16 overflow
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        samples = self.cfg.micro_batch * self.accum * self.dist.world_size
        return StepResult(
            loss_value, norm_value, applied and math.isfinite(norm_value), self.tokens_per_step, samples
        )

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
            self.log(
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
