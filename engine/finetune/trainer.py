"""The QLoRA fine-tune: conversations in, an adapter out, on the loop pre-training uses.

Everything a pre-training run has comes from :class:`engine.train.loop.TrainingLoop` and the
components beside it (events, TensorBoard, validation, checkpoints, stop / checkpoint-now, the
update step, NaN and OOM guard rails); this file assembles them and supplies what differs: the
base loaded quantised with LoRA adapters, batches of formatted conversations, and a loss over
assistant tokens only, normalised by the assistant tokens of the whole optimizer step (not
averaged per micro-batch, which would weigh a short reply as much as a long one when micro-batches
differ in length).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.config.errors import ConfigError
from engine.config.finetune import FinetuneConfig
from engine.finetune.base import BaseModel, is_hub_id, resolve_base
from engine.finetune.batches import ChatBatches
from engine.finetune.chat_data.load import load_conversations
from engine.finetune.chat_data.spec import parse_chat_spec
from engine.finetune.chat_data.split import split_conversations
from engine.finetune.chat_format import ChatFormatter, encode_all
from engine.finetune.eval_budget import plan_evaluation
from engine.finetune.qlora import (
    ADAPTER_FILES,
    ADAPTER_WEIGHTS,
    add_lora,
    build_optimizer,
    copy_adapter,
    evaluating,
    hf_source,
    load_adapter_weights,
    load_base_model,
    parameter_counts,
    resolve_targets,
    save_adapter,
)
from engine.finetune.sampler import ChatSampler, build_chat_sampler
from engine.runs.session import EngineSession
from engine.train.base import LoopTrainer
from engine.train.checkpoint import TRAINER_FILE, TrainerState, load_trainer_state
from engine.train.layout import read_pointer, resolve_checkpoint
from engine.train.loop import (
    DistInfo,
    LoopParts,
    StepResult,
    TrainingLoop,
    TrainingStopped,
)
from engine.train.optim import CosineSchedule
from engine.train.precision import Precision, choose_precision
from engine.train.progress import Progress
from engine.train.recorder import Observer
from engine.train.update import OptimizerUpdate

IGNORE = -100


def finetune_steps(cfg: FinetuneConfig, batches_per_epoch: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))


def warmup_steps(cfg: FinetuneConfig, total: int) -> int:
    """The QLoRA paper's 3% warm-up unless set."""
    return max(1, round(0.03 * total)) if cfg.warmup_steps < 0 else cfg.warmup_steps


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions (labels are aligned with inputs,
    Hugging Face style: position t's label is predicted from position t - 1)."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE, reduction="sum"
    )


#: Architectures whose logits are exactly ``lm_head(last hidden state)`` (no soft-capping or
#: scaling after the head), so the head may run on the labelled positions alone.
PLAIN_HEAD_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "olmo2"})


def labelled_loss_sum(base: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """:func:`token_loss_sum` computing logits only where there is a label.

    The loss falls on assistant tokens, often under half of a chat batch; running the vocabulary
    projection on those rows only saves its matmul and, more, the ``tokens x vocab`` logits in
    fp32 (for Llama-2-7B at 4 x 512 tokens, ~260 MB plus their gradient) on the rest.
    """
    hidden = base.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = base.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def labelled(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != IGNORE).sum())


class FinetuneTrainer(LoopTrainer):
    """A QLoRA fine-tune: the base, adapters, chat batches and loss assembled into the shared loop."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        run_dir: Path,
        session: EngineSession | None,
        *,
        resume: bool = False,
        dist_info: DistInfo | None = None,
        observer: Observer | None = None,
    ) -> None:
        super().__init__(
            cfg.validate(), run_dir, session, resume=resume, dist_info=dist_info, observer=observer
        )
        if self.dist.world_size > 1:
            raise TrainingStopped(
                "fine-tuning runs in one process (one GPU): QLoRA fits a 7B model on a "
                "single GPU. Fix: run without --nproc / torchrun."
            )

    # ------------------------------------------------------------------------------ set-up
    def _data(self, tokenizer: Any) -> None:
        cfg = self.cfg
        conversations = load_conversations(parse_chat_spec(cfg.data))
        train, val = split_conversations(conversations, cfg.val_fraction, cfg.seed)
        self.held_out = val  # what the validation loss is measured on, and samples ask from
        self.formatter = ChatFormatter(tokenizer, cfg.chat_template)
        self.train_examples, stats = encode_all(train, self.formatter, cfg.seq_len)
        self.val_examples = encode_all(val, self.formatter, cfg.seq_len)[0] if val else []
        self.recorder.log(
            f"data: {len(conversations):,} conversations ({len(train):,} train, {len(val):,} held out); "
            f"{stats.examples:,} training examples, {stats.assistant_tokens:,} of {stats.tokens:,} "
            f"tokens are the assistant's (the loss falls on those); {stats.truncated:,} truncated to "
            f"seq_len={cfg.seq_len}, {stats.dropped:,} dropped (no assistant token left); chat "
            f"template: {self.formatter.name}"
        )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self.batches = ChatBatches(
            self.train_examples,
            cfg.micro_batch,
            cfg.seq_len,
            packing=cfg.packing,
            pad_id=self.pad_id,
            seed=cfg.seed,
            device=self.device,
        )

    def _resolve_base(self) -> BaseModel:
        """The base as checked at launch; on resume, the copy exported into ``base/`` stands in
        for a pre-training checkpoint that has since been pruned."""
        try:
            return resolve_base(self.cfg.base, self.cfg.base_checkpoint)
        except ConfigError:
            exported = self.run_dir / "base"
            if self.resume and (exported / "config.json").is_file():
                return BaseModel("folder", f"{self.cfg.base} (exported)", exported)
            raise

    def setup(self) -> TrainingLoop:
        """Build every component (in the order exact resume depends on) and the loop over them."""
        cfg = self.cfg
        self.start_device()
        self.precision: Precision = choose_precision(cfg.compute_dtype, self.device)
        self.base = self._resolve_base()
        self.source = hf_source(self.base, self.run_dir)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.source, trust_remote_code=cfg.trust_remote_code)
        self._data(self.tokenizer)
        targets = resolve_targets(cfg, self.source)
        compute = self.precision.dtype or torch.float32
        self.recorder.emit(
            "progress", phase="loading the base", done=0, total=None, unit="steps", rate=None, eta=None
        )
        self.recorder.log(
            f"loading base {self.base.describe()} ({cfg.quantization}); a 7B model takes minutes, and "
            "a Hub model is downloaded into the Hugging Face cache first"
        )
        started = time.perf_counter()
        model = load_base_model(self.source, cfg, self.device, compute)
        elapsed = time.perf_counter() - started
        self.recorder.emit(
            "progress", phase="loading the base", done=1, total=1, unit="steps", rate=None, eta=0.0
        )
        self.recorder.log(f"base loaded in {elapsed:.1f} s")
        torch.manual_seed(cfg.seed)  # the adapters' initialisation
        self.model = add_lora(model, cfg, targets)
        self.trainable, self.n_params = parameter_counts(self.model)
        self.plain_head = getattr(model.config, "model_type", None) in PLAIN_HEAD_MODELS
        total = finetune_steps(cfg, self.batches.batches_per_epoch)
        self.cfg = cfg = self._evaluation_budget(cfg, total)
        self.schedule = CosineSchedule(cfg.lr, total, warmup_steps(cfg, total), cfg.min_lr_ratio)
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.update = OptimizerUpdate(
            self.optimizer,
            [p for p in self.model.parameters() if p.requires_grad],
            grad_clip=cfg.grad_clip,
            precision=self.precision,
        )
        if self.resume:
            progress = self._restore()
        else:
            progress = Progress()
            torch.manual_seed(cfg.seed)
        self.recorder.update_meta(total_steps=total, base_source=self.source, base=self.base.describe())
        self.recorder.open_tensorboard(self.run_dir, progress.step)
        quant = (
            cfg.quantization
            if cfg.quantization == "none"
            else (
                f"{cfg.quantization} {cfg.quant_type if cfg.quantization == '4bit' else ''}"
                f"{' double-quant' if cfg.double_quant and cfg.quantization == '4bit' else ''}"
            ).strip()
        )
        tokens_per_step = cfg.micro_batch * cfg.seq_len * cfg.grad_accum
        self.recorder.emit(
            "run_info",
            config=cfg.to_dict(),
            params=self.n_params,
            trainable_params=self.trainable,
            precision=self.precision.name,
            precision_reason=self.precision.reason,
            device=str(self.device),
            total_steps=total,
            tokens_per_step=tokens_per_step,
            compiled=False,
            resumed_from=progress.resumed_from,
            base=self.base.describe(),
            quantization=quant,
            lora_targets=targets if isinstance(targets, str) else ",".join(targets),
            chat_template=self.formatter.name,
        )
        self.recorder.log(
            f"base {self.base.describe()}: {self.n_params:,} parameters ({quant}), LoRA r={cfg.lora_r} "
            f"alpha={cfg.lora_alpha} on {targets if isinstance(targets, str) else ', '.join(targets)}: "
            f"{self.trainable:,} trainable ({100 * self.trainable / max(1, self.n_params):.2f}%); "
            f"{self.precision.name} compute ({self.precision.reason}); {total} steps on "
            f"{self.device}"
        )
        self.model.train()
        parts = LoopParts(
            device=self.device,
            optimizer=self.optimizer,
            schedule=self.schedule,
            update=self.update,
            loader=self.batches,
            total=total,
            train_step=self.train_step,
            evaluate=self.evaluate,
            write_checkpoint=self.write_checkpoint,
            on_finished=self.on_finished,
            sample=self._sampler(),
        )
        return self.assemble(parts, progress)

    def _evaluation_budget(self, cfg: FinetuneConfig, total: int) -> FinetuneConfig:
        """``eval_batches`` / ``eval_every`` of 0 resolved so that validation takes at most ~10% of
        the training time (:mod:`engine.finetune.eval_budget`); the log says what was chosen."""
        val = self.val_examples
        available = -(-len(val) // min(cfg.micro_batch, len(val))) if val else 0
        plan = plan_evaluation(
            total,
            cfg.grad_accum,
            eval_every=cfg.eval_every,
            eval_batches=cfg.eval_batches,
            available=available,
        )
        if val:
            self.recorder.log(plan.describe())
        return replace(cfg, eval_batches=plan.batches, eval_every=plan.every)

    def _sampler(self) -> ChatSampler | None:
        """The ``sample_every`` sampler (rank 0 only; None when off): see :mod:`engine.finetune.sampler`."""
        if not self.dist.is_main:
            return None
        return build_chat_sampler(
            self.cfg,
            self.model,
            self.tokenizer,
            self.formatter,
            self.held_out,
            self.recorder,
            pad_id=self.pad_id,
        )

    def _read_checkpoint(self, path: Path) -> TrainerState:
        """The trainer state first (a bad one leaves the adapter untouched), then the adapter."""
        from engine.train.checkpoint import read_file

        state = load_trainer_state(path)
        read_file(path / ADAPTER_WEIGHTS, lambda: load_adapter_weights(self.model, path))
        return state

    def _restore(self) -> Progress:
        path, state = self.checkpointer.load(self._read_checkpoint)
        self.optimizer.load_state_dict(state.optimizer)
        progress = Progress.resume(state, self.update, self.batches)
        self.recorder.log(f"resumed from {path.name} (step {state.step})")
        return progress

    def before_first_step(self) -> None:
        """The base's own validation loss as step 0: the figure the fine-tune has to beat."""
        if self.loop is None or self.loop.progress.resumed_from is not None:
            return
        val = self.evaluate()
        if val is not None:
            self.recorder.emit("eval", step=0, val_loss=val, perplexity=math.exp(min(val, 50.0)))
            self.recorder.scalar("val/loss", val, 0)
            self.recorder.log(f"validation loss of the base before fine-tuning: {val:.4f}")

    # ------------------------------------------------------------------------------ steps
    def _loss_sum(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.precision.autocast():
            if self.plain_head:
                return labelled_loss_sum(self.model.get_base_model(), batch)
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return token_loss_sum(logits, batch["labels"])

    def train_step(self) -> StepResult:
        batches = [self.batches.next_batch() for _ in range(self.cfg.grad_accum)]
        n_labels = max(1, sum(labelled(b) for b in batches))
        loss_sum = torch.zeros((), device=self.device)
        for batch in batches:
            loss = self._loss_sum(batch) / n_labels
            self.update.backward(loss)
            loss_sum += loss.detach()
        tokens = sum(self.batches.tokens_in(b) for b in batches)
        samples = sum(int(b["input_ids"].shape[0]) for b in batches)
        return self.update(loss_sum, tokens, samples)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean loss per assistant token over the held-out conversations (at most eval_batches)."""
        if not self.val_examples:
            return None
        cfg = self.cfg
        # Padded, whatever the training layout: a packed handful of held-out conversations can
        # fill fewer rows than one batch, and per-conversation rows make the figure comparable.
        val = ChatBatches(
            self.val_examples,
            min(cfg.micro_batch, len(self.val_examples)),
            cfg.seq_len,
            packing=False,
            pad_id=self.pad_id,
            seed=cfg.seed,
            shuffle=False,
            device=self.device,
        )
        total, count = torch.zeros((), device=self.device), 0
        with evaluating(self.model):
            for _ in range(min(cfg.eval_batches, val.batches_per_epoch)):
                batch = val.next_batch()
                total += self._loss_sum(batch)
                count += labelled(batch)
        return (total / max(1, count)).item()

    # ------------------------------------------------------------------------------ checkpoints
    def write_checkpoint(self, directory: Path, state: TrainerState, weights: dict | None) -> None:
        save_adapter(self.model, directory, self.base_name())
        torch.save(state.__dict__, directory / TRAINER_FILE)

    def base_name(self) -> str:
        """How the adapter names its base: the Hub id for Hub models (portable), else the folder."""
        if self.base.kind in ("hub", "folder") and is_hub_id(self.base.name):
            return self.base.name
        return str(Path(self.source).resolve())

    def oom_advice(self) -> str:
        cfg = self.cfg
        tips = [
            f"lower micro_batch (e.g. --set micro_batch={max(1, cfg.micro_batch // 2)} --set "
            f"grad_accum={cfg.grad_accum * 2} keeps the batch), lower seq_len"
        ]
        if not cfg.gradient_checkpointing:
            tips.append("set gradient_checkpointing=true")
        if cfg.quantization != "4bit":
            tips.append("use quantization=4bit")
        if cfg.optimizer != "paged_adamw_8bit":
            tips.append("use optimizer=paged_adamw_8bit")
        return ", ".join(tips[:-1]) + (", or " if len(tips) > 1 else "") + tips[-1] + "."

    def on_finished(self) -> None:
        """Publish the adapter: ``<run>/adapter/`` holds the best checkpoint's (the last without
        validation) plus the tokenizer, the folder ``PeftModel.from_pretrained`` and chat load."""
        which = "best" if read_pointer(self.checkpoints, "best") else "last"
        src = resolve_checkpoint(self.checkpoints, which)
        if src is None or not all((src / n).is_file() for n in ADAPTER_FILES):
            return
        from engine.runs.store import atomic_path

        out = self.run_dir / "adapter"
        with atomic_path(out) as tmp:
            size = copy_adapter(src, tmp)
            self.tokenizer.save_pretrained(str(tmp))
        self.recorder.update_meta(adapter="adapter", adapter_bytes=size, adapter_from=src.name)
        self.recorder.log(
            f"adapter ({which} checkpoint, {src.name}): {size / 2**20:.1f} MiB in {out} "
            f"(`canvas export {self.run_dir.name} --merged OUT` writes a merged model)"
        )
