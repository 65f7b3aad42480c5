"""The bookkeeping every run kind shares: length, schedule, AdamW, logging, evaluation,
checkpoints, guard rails, telemetry. Torch-free.

:class:`LoopConfig` is the part of a run's config the training loop reads; each kind's config
(:class:`engine.config.train.TrainConfig`, :class:`engine.config.finetune.FinetuneConfig`)
inherits it, so the keys stay flat (``--set log_every=5``, ``log_every = 5`` in TOML) and are
declared and validated once. A kind re-declares a field only to give it its own default (a
fine-tune's ``lr`` is the QLoRA paper's 2e-4, a pre-training's comes from the preset).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, TypeVar

from engine.config.errors import ConfigError
from engine.config.settings import check_types

#: The most sequences one micro-batch may hold: far beyond any accelerator's memory at any length,
#: low enough that a typo (``micro_batch=1e9``) is refused before a run exists.
MAX_MICRO_BATCH = 65_536


def check_micro_batch(micro_batch: int, seq_len: int, usual: int, accum: str = "grad_accum") -> None:
    """Refuse a micro-batch no step could hold, with a fix that does what it says: the usual size,
    and accumulation for more tokens per optimizer step."""
    if isinstance(micro_batch, int) and micro_batch > MAX_MICRO_BATCH:
        raise ConfigError(
            "micro_batch",
            f"micro_batch = {micro_batch:,} sequences of {seq_len} tokens is more than one micro-batch "
            f"can hold (at most {MAX_MICRO_BATCH:,}; memory grows with it). Fix: use --set "
            f"micro_batch={usual}, and raise {accum} for more tokens per optimizer step (e.g. --set "
            f"{accum}=8).",
        )


_Config = TypeVar("_Config", bound="LoopConfig")


@dataclass
class LoopConfig:
    """The shared keys, with pre-training's defaults (a fine-tune re-declares its own).
    ``0`` / ``-1`` / ``"auto"`` mean "derive a sensible value"."""

    # data
    data: str = "embedded"
    val_fraction: float = 0.02
    # batch
    seq_len: int = 0  # pre-training: 0 is the preset's
    micro_batch: int = 0  # pre-training: 0 is the preset's
    grad_accum: int = 1
    # length: the first of these that is set wins (max_steps, then the kind's others)
    max_steps: int = 0
    epochs: float = 0.0
    # optimiser and schedule (AdamW, linear warm-up, cosine decay to lr * min_lr_ratio)
    lr: float = 0.0  # pre-training: 0 is the preset's
    min_lr_ratio: float = 0.1
    warmup_steps: int = -1  # -1: automatic (pre-training: 5% of the steps, at most 1000)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # execution
    device: str = "auto"
    seed: int = 1337
    # bookkeeping
    log_every: int = 10
    eval_every: int = 0  # 0: ten evaluations over the run
    eval_batches: int = 20
    #: Whether ``eval_batches = 0`` means "automatic" (a fine-tune's validation budget).
    AUTO_EVAL_BATCHES: ClassVar[bool] = False
    checkpoint_every: int = 0  # 0: only best, last and on stop
    keep_checkpoints: int = 3
    max_nonfinite: int = 5  # consecutive non-finite losses before the run stops
    telemetry_interval: float = 5.0
    carbon_country: str = "GBR"
    # samples during training: every N steps, a short greedy continuation of each prompt
    sample_every: int = 0  # 0: off
    sample_prompts: str = ""  # a text file, one prompt a line; "": a few validation documents' openings

    def validate_loop(self) -> None:
        """The checks every kind shares: schedule, AdamW, clipping and bookkeeping fields. A fix
        names the kind's own default where it differs (``beta2`` is 0.95 for pre-training, 0.999
        for a fine-tune)."""

        def bad(name: str, why: str, fix: str) -> ConfigError:
            return ConfigError(name, f"{name} = {getattr(self, name)!r} {why}. Fix: {fix}.")

        check_types(self)  # every key's type first: the checks below compare numbers
        if self.seed < 0:
            raise bad("seed", "cannot be negative", "use a whole number of 0 or more, e.g. seed = 1337")
        auto = ("eval_batches",) if self.AUTO_EVAL_BATCHES else ()
        for name in ("grad_accum", "log_every", "eval_batches", "keep_checkpoints", "max_nonfinite"):
            if name in auto:
                continue
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be a whole number of at least 1", f"set {name} to 1 or more")
        for name in ("max_steps", "eval_every", "checkpoint_every", *auto):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise bad(name, "must be a whole number (0 for automatic)", f"set {name} to 0 or more")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < -1:
            raise bad("warmup_steps", "must be -1 (automatic) or a number of steps", "use -1 or 0+")
        if self.epochs < 0 or not math.isfinite(self.epochs):
            raise bad("epochs", "must be a non-negative number", "set epochs to e.g. 1 or 3")
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "must be between 0 and 1", "use 0.1 (decay to 10% of lr)")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, "must be in [0, 1)", f"use beta1 = 0.9, beta2 = {self.default('beta2')}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            name = "weight_decay" if self.weight_decay < 0 else "grad_clip"
            raise bad(name, "cannot be negative", f"use 0 to disable {name}")
        if self.telemetry_interval <= 0:
            raise bad("telemetry_interval", "must be positive", "use 5 (seconds)")
        if (
            not isinstance(self.sample_every, int)
            or isinstance(self.sample_every, bool)
            or self.sample_every < 0
        ):
            raise bad(
                "sample_every",
                "must be a whole number of steps (0 turns samples off)",
                "set sample_every to 0 (off) or a number of steps such as 100",
            )
        if not isinstance(self.sample_prompts, str):
            raise bad(
                "sample_prompts",
                "must be the path of a text file with one prompt a line",
                'use e.g. sample_prompts = "prompts.txt", or "" for openings of validation documents',
            )
        if len(self.carbon_country) != 3 or not self.carbon_country.isalpha():
            raise bad(
                "carbon_country", "is not an ISO 3166 alpha-3 country code", "use e.g. GBR, USA, FRA, DEU"
            )

    def read_sample_prompts(self) -> list[str] | None:
        """The prompts of ``sample_prompts`` (one a line, blank lines skipped), or None when no
        file is named (the engine then takes the openings of a few validation documents). A
        missing, unreadable or empty file raises a :class:`ConfigError` naming the key and the fix."""
        if not self.sample_prompts:
            return None
        path = Path(self.sample_prompts).expanduser()
        fix = 'Fix: point sample_prompts at a text file with one prompt a line, or set sample_prompts = ""'
        fix += " to use the openings of a few validation documents."
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                "sample_prompts", f"sample_prompts = {self.sample_prompts!r}: no such file. {fix}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(
                "sample_prompts", f"sample_prompts = {self.sample_prompts!r} cannot be read ({why}). {fix}"
            ) from None
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise ConfigError(
                "sample_prompts",
                f"sample_prompts = {self.sample_prompts!r} holds no prompt (it is empty). {fix}",
            )
        return prompts

    def check_sample_prompts(self: _Config) -> _Config:
        """Preflight's check of ``sample_prompts`` (see :meth:`read_sample_prompts`); returns this
        config with the file's path made absolute, so the engine reads the file that was checked
        wherever it runs from. Without ``sample_every`` the key is not read at all."""
        if not self.sample_every or not self.sample_prompts:
            return self
        self.read_sample_prompts()
        return dataclasses.replace(self, sample_prompts=str(Path(self.sample_prompts).expanduser().resolve()))

    def validate(self) -> LoopConfig:
        """A kind's ``validate`` adds its own checks to :meth:`validate_loop`."""
        self.validate_loop()
        return self

    @classmethod
    def default(cls, name: str) -> object:
        """The default of field ``name`` for this kind (a kind may re-declare it)."""
        return next(f.default for f in fields(cls) if f.name == name)

    @classmethod
    def keys(cls) -> set[str]:
        """Every flat key of this kind's config."""
        return {f.name for f in fields(cls)}
