"""The run config of a pre-training run: what ``--preset``, ``--config run.toml`` and ``--set`` set.

Torch-free so the console's New-run form and ``canvas train`` validate a config instantly. The
field names are the public keys users write (``--set lr=3e-4``, ``max_steps = 500`` in TOML);
model shape keys go under ``model.`` (``--set model.n_layers=8``). A config saved into a run
(``run.json["config"]``) is complete: ``TrainConfig.from_dict`` of it reproduces the run.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError
from engine.config.model import ModelConfig
from engine.config.presets import get_preset

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def validate_shared(cfg: Any, beta2: float) -> None:
    """The checks every run kind's config shares: schedule, AdamW, clipping and bookkeeping fields
    (``beta2`` is the kind's usual value, named in the fix)."""

    def bad(name: str, why: str, fix: str) -> ConfigError:
        return ConfigError(name, f"{name} = {getattr(cfg, name)!r} {why}. Fix: {fix}.")

    for name in ("grad_accum", "log_every", "eval_batches", "keep_checkpoints", "max_nonfinite"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise bad(name, "must be a whole number of at least 1", f"set {name} to 1 or more")
    for name in ("max_steps", "eval_every", "checkpoint_every"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 0:
            raise bad(name, "must be a whole number (0 for automatic)", f"set {name} to 0 or more")
    if not isinstance(cfg.warmup_steps, int) or cfg.warmup_steps < -1:
        raise bad("warmup_steps", "must be -1 (automatic) or a number of steps", "use -1 or 0+")
    if cfg.epochs < 0 or not math.isfinite(cfg.epochs):
        raise bad("epochs", "must be a non-negative number", "set epochs to e.g. 1 or 3")
    if not 0 <= cfg.min_lr_ratio <= 1:
        raise bad("min_lr_ratio", "must be between 0 and 1", "use 0.1 (decay to 10% of lr)")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise bad(name, "must be in [0, 1)", f"use beta1 = 0.9, beta2 = {beta2}")
    if cfg.weight_decay < 0 or cfg.grad_clip < 0:
        name = "weight_decay" if cfg.weight_decay < 0 else "grad_clip"
        raise bad(name, "cannot be negative", f"use 0 to disable {name}")
    if cfg.telemetry_interval <= 0:
        raise bad("telemetry_interval", "must be positive", "use 5 (seconds)")
    if len(cfg.carbon_country) != 3 or not cfg.carbon_country.isalpha():
        raise bad("carbon_country", "is not an ISO 3166 alpha-3 country code", "use e.g. GBR, USA, FRA, DEU")


@dataclass
class TrainConfig:
    """Every knob of a pre-training run. ``0`` / ``"auto"`` mean "derive a sensible value"."""

    preset: str = "tiny"
    model: ModelConfig = field(default_factory=lambda: get_preset("tiny").model)
    # data
    data: str = "embedded"
    tokenizer: str = ""  # a folder or Hub name to reuse; empty: train a byte-level BPE
    vocab_size: int = 0  # BPE vocabulary to train; 0: the preset's model.vocab_size
    val_fraction: float = 0.02
    # batch
    seq_len: int = 0  # 0: the preset's
    micro_batch: int = 0  # 0: the preset's
    grad_accum: int = 1
    tokens_per_step: int = 0  # if set, grad_accum is derived from it
    # length: the first of these that is set wins (max_steps, then max_tokens, then epochs)
    max_steps: int = 0
    max_tokens: int = 0
    epochs: float = 0.0
    # optimiser and schedule
    lr: float = 0.0  # 0: the preset's
    min_lr_ratio: float = 0.1
    warmup_steps: int = -1  # -1: 5% of the steps, at most 1000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # execution
    precision: str = "auto"
    compile: str = "auto"  # auto: on for CUDA, off on CPU; or true / false
    activation_checkpointing: bool = False
    device: str = "auto"
    distributed: str = "ddp"  # with several processes: ddp (replicas) or fsdp (FSDP2 sharding)
    deterministic: bool = False
    seed: int = 1337
    # bookkeeping
    log_every: int = 10
    eval_every: int = 0  # 0: ten evaluations over the run
    eval_batches: int = 20
    checkpoint_every: int = 0  # 0: only best, last and on stop
    keep_checkpoints: int = 3
    max_nonfinite: int = 5  # consecutive non-finite losses before the run stops
    telemetry_interval: float = 5.0
    carbon_country: str = "GBR"

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> TrainConfig:
        def bad(name: str, why: str, fix: str) -> ConfigError:
            return ConfigError(name, f"{name} = {getattr(self, name)!r} {why}. Fix: {fix}.")

        get_preset(self.preset)
        self.model.validate()
        validate_shared(self, beta2=0.95)
        for name in ("vocab_size", "seq_len", "micro_batch", "tokens_per_step", "max_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise bad(name, "must be a whole number (0 for automatic)", f"set {name} to 0 or more")
        if self.lr < 0 or self.lr > 1:
            raise bad("lr", "is not a usable learning rate", "use a value such as 3e-4 (0 = the preset's)")
        if not 0 <= self.val_fraction < 0.5:
            raise bad("val_fraction", "must be in [0, 0.5)", "use 0.02 (hold out 2% of documents)")
        if self.precision not in PRECISIONS:
            raise bad(
                "precision",
                f"is not one of {', '.join(PRECISIONS)}",
                "use auto (bf16 where the hardware has it, else fp16 on GPUs, fp32 on CPUs)",
            )
        if self.distributed not in ("ddp", "fsdp"):
            raise bad(
                "distributed",
                "is not ddp or fsdp",
                "use ddp (replicas) or fsdp (sharded, for models that do not fit on one GPU)",
            )
        if str(self.compile).lower() not in ("auto", *TRUE, *FALSE):
            raise bad("compile", "must be auto, true or false", "use compile=auto")
        self.model.check_seq_len(self.seq_len, "seq_len")
        if self.tokens_per_step and self.tokens_per_step % (self.micro_batch * self.seq_len):
            raise bad(
                "tokens_per_step",
                f"is not a multiple of micro_batch x seq_len = {self.micro_batch} x {self.seq_len}",
                f"use a multiple of {self.micro_batch * self.seq_len}",
            )
        return self

    # ----------------------------------------------------------------------------- derived values
    def compile_enabled(self, device_type: str) -> bool:
        value = str(self.compile).lower()
        return device_type == "cuda" if value == "auto" else value in TRUE

    def accumulation(self, world_size: int = 1) -> int:
        if self.tokens_per_step:
            per_micro = self.micro_batch * self.seq_len * world_size
            return max(1, self.tokens_per_step // per_micro)
        return self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        model = data.pop("model", None)
        _check_keys(data, {f.name for f in fields(cls)} - {"model"}, "")
        cfg = cls(**data)
        if model is not None:
            cfg.model = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(model)
        return cfg.validate()


def _check_keys(data: dict[str, Any], known: set[str], prefix: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, 1)
            hint = f" Did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(
                prefix + key,
                f"unknown setting {prefix}{key!r}.{hint} Known settings: {', '.join(sorted(known))}.",
            )


def _coerce(name: str, raw: str, current: Any) -> Any:
    """Parse a ``--set`` value to the type of the field it sets."""
    text = raw.strip()
    try:
        if isinstance(current, bool):
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
            raise ValueError
        if isinstance(current, int):
            value = float(text)  # accepts 1e6
            if value != int(value):
                raise ValueError
            return int(value)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        kind = type(current).__name__.replace("bool", "true/false").replace("int", "whole number")
        raise ConfigError(
            name, f"--set {name}={raw!r}: expected a {kind}. Fix: e.g. --set {name}={current}."
        ) from None
    return text


def _preset_defaults(preset_name: str) -> TrainConfig:
    preset = get_preset(preset_name)
    lr = {"tiny": 2e-3}.get(preset_name, 3e-4)
    steps = {"tiny": 600}.get(preset_name, 10000)
    return TrainConfig(
        preset=preset_name,
        model=replace(preset.model),
        seq_len=preset.seq_len,
        micro_batch=preset.micro_batch,
        lr=lr,
        max_steps=steps,
    )


def apply_settings(cfg: TrainConfig, settings: dict[str, Any], source: str) -> TrainConfig:
    """Overlay ``settings`` (from TOML or --set) on ``cfg``, checking every key by name."""
    top = {f.name: f for f in fields(TrainConfig)}
    model_updates: dict[str, Any] = {}
    updates: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "model" and isinstance(value, dict):
            model_updates.update(value)
        elif key.startswith("model."):
            model_updates[key.removeprefix("model.")] = value
        else:
            _check_keys({key: value}, set(top) - {"model"}, "")
            updates[key] = value
    length_keys = {"max_steps", "max_tokens", "epochs"} & set(updates)
    if length_keys:  # naming one length criterion replaces the preset's default length
        updates = {"max_steps": 0, "max_tokens": 0, "epochs": 0.0, **updates}
    out = replace(cfg, **updates)
    if model_updates:
        model = cfg.model.to_dict()
        _check_keys(model_updates, set(model), "model.")
        if "dim" in model_updates and "ffn_dim" not in model_updates:
            model["ffn_dim"] = 0  # re-derive the FFN width for the new width
        model.update(model_updates)
        try:
            out.model = ModelConfig(**model)
        except TypeError as exc:
            raise ConfigError("model", f"{source}: {exc}") from None
    if "seq_len" in updates and "max_seq_len" not in model_updates:
        out.model = replace(out.model, max_seq_len=max(out.model.max_seq_len, out.seq_len))
    return out


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["lr=3e-4", "model.dim=512"]`` → raw strings by key (coerced in :func:`load_train_config`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f"--set {pair!r} is not KEY=VALUE. Fix: e.g. --set max_steps=500.")
        out[key.strip()] = value
    return out


def load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--config", f"config file {path} does not exist. Fix: check the path.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}. Fix: correct that line.") from None
    data.pop("name", None)
    return data


def load_train_config(
    preset: str | None = None,
    config_file: Path | None = None,
    sets: list[str] | None = None,
    data: str | None = None,
) -> TrainConfig:
    """Preset defaults, then the TOML file, then ``--data``, then ``--set`` (last wins)."""
    file_settings = load_toml(config_file) if config_file else {}
    preset_name = preset or file_settings.get("preset") or "tiny"
    cfg = _preset_defaults(preset_name)
    if file_settings:
        cfg = apply_settings(cfg, file_settings, str(config_file))
    if data is not None:
        cfg.data = data
    raw = parse_sets(sets or [])
    typed: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("model."):
            name = key.removeprefix("model.")
            current = cfg.model.to_dict()
            _check_keys({name: value}, set(current), "model.")
            typed[key] = _coerce(key, value, current[name])
        else:
            _check_keys({key: value}, {f.name for f in fields(TrainConfig)} - {"model"}, "")
            typed[key] = _coerce(key, value, getattr(cfg, key))
    cfg = apply_settings(cfg, typed, "--set")
    if not cfg.vocab_size:
        cfg.vocab_size = cfg.model.vocab_size
    return cfg.validate()


def config_json(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
