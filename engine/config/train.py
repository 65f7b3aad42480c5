"""The run config of a pre-training run: what ``--preset``, ``--config run.toml`` and ``--set`` set.

Torch-free so the console's New-run form and ``canvas train`` validate a config instantly. The
field names are the public keys users write (``--set lr=3e-4``, ``max_steps = 500`` in TOML);
model shape keys go under ``model.`` (``--set model.n_layers=8``). A config saved into a run
(``run.json["config"]``) is complete: ``TrainConfig.from_dict`` of it reproduces the run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError
from engine.config.loop import LoopConfig
from engine.config.model import ModelConfig
from engine.config.presets import get_preset
from engine.config.settings import (
    FALSE,
    TRUE,
    check_keys,
    check_types,
    check_value,
    coerce,
    load_toml,
    parse_sets,
)

__all__ = ["PRECISIONS", "TrainConfig", "apply_settings", "config_json", "load_train_config"]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class TrainConfig(LoopConfig):
    """Every knob of a pre-training run. ``0`` / ``"auto"`` mean "derive a sensible value". The
    bookkeeping keys (length, schedule, logging, evaluation, checkpoints) are :class:`LoopConfig`'s,
    whose defaults are pre-training's (``lr = 0`` and ``seq_len = micro_batch = 0``: the preset's)."""

    preset: str = "tiny"
    model: ModelConfig = field(default_factory=lambda: get_preset("tiny").model)
    # data
    tokenizer: str = ""  # a folder or Hub name to reuse; empty: train a byte-level BPE
    vocab_size: int = 0  # BPE vocabulary to train; 0: the preset's model.vocab_size
    # batch (seq_len and micro_batch 0: the preset's)
    tokens_per_step: int = 0  # if set, grad_accum is derived from it
    # length: the first of these that is set wins (max_steps, then max_tokens, then epochs)
    max_tokens: int = 0
    # execution
    precision: str = "auto"
    compile: str = "auto"  # auto: on for CUDA, off on CPU; or true / false
    activation_checkpointing: bool = False
    distributed: str = "ddp"  # with several processes: ddp (replicas) or fsdp (FSDP2 sharding)
    deterministic: bool = False

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> TrainConfig:
        def bad(name: str, why: str, fix: str) -> ConfigError:
            return ConfigError(name, f"{name} = {getattr(self, name)!r} {why}. Fix: {fix}.")

        check_types(self)
        get_preset(self.preset)
        self.model.validate()
        self.validate_loop()
        for name in ("seq_len", "micro_batch"):  # 0 only until the preset's is applied (check_config)
            if getattr(self, name) < 0:
                raise bad(
                    name,
                    "must be a whole number of at least 1",
                    f"use e.g. {name}={get_preset(self.preset).__dict__[name]} (or leave {name} out to keep "
                    "the preset's)",
                )
        for name in ("vocab_size", "tokens_per_step", "max_tokens"):
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
        check_keys(data, {f.name for f in fields(cls)} - {"model"}, "")
        cfg = cls(**data)
        if model is not None:
            cfg.model = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(model)
        return cfg.validate()


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
    model_defaults = cfg.model.to_dict()
    model_updates: dict[str, Any] = {}
    updates: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "model":
            if not isinstance(value, dict):
                raise ConfigError(
                    "model",
                    f"{source}: model = {value!r} must be a table of model settings. Fix: write them "
                    "under [model] (dim = 512 …) or as model.dim = 512.",
                )
            model_updates.update(value)
        elif key.startswith("model."):
            model_updates[key.removeprefix("model.")] = value
        elif key == "data" and not isinstance(value, str):
            updates[key] = data_text(value, source)
        else:
            check_keys({key: value}, set(top) - {"model"}, "")
            updates[key] = check_value(key, value, getattr(cfg, key), source)
    check_keys(model_updates, set(model_defaults), "model.")
    for key, value in model_updates.items():
        model_updates[key] = check_value(f"model.{key}", value, model_defaults[key], source)
    length_keys = {"max_steps", "max_tokens", "epochs"} & set(updates)
    if length_keys:  # naming one length criterion replaces the preset's default length
        updates = {"max_steps": 0, "max_tokens": 0, "epochs": 0.0, **updates}
    out = replace(cfg, **updates)
    if model_updates:
        model = cfg.model.to_dict()
        check_keys(model_updates, set(model), "model.")
        if "dim" in model_updates and "ffn_dim" not in model_updates:
            model["ffn_dim"] = 0  # re-derive the FFN width for the new width
        model.update(model_updates)
        try:
            out.model = ModelConfig(**model)
        except TypeError as exc:
            raise ConfigError("model", f"{source}: {exc}") from None
    return out


def data_text(value: Any, source: str) -> str:
    """The ``data`` key in TOML's structured form (``[[data.sources]]`` tables, or a list of specs)
    as the text the config holds: the string form when it says the same, else the structured form
    as JSON (a path with ``,`` ``#`` or ``?`` has no string form), which :func:`parse_spec` reads."""
    import json

    from engine.data.spec import parse_spec, spec_from_obj

    if not isinstance(value, dict | list):
        raise ConfigError(
            "data",
            f'{source}: data = {value!r} must be a data spec. Fix: e.g. data = "embedded", or '
            '[[data.sources]] tables with path = "…".',
        )
    spec = spec_from_obj(value, field_name="data")
    text = spec.to_string()
    try:
        if parse_spec(text, field_name="data") == spec:
            return text
    except ConfigError:
        pass
    return json.dumps(spec.to_dict(), sort_keys=True)


def load_train_config(
    preset: str | None = None,
    config_file: Path | None = None,
    sets: list[str] | None = None,
    data: str | None = None,
) -> TrainConfig:
    """Preset defaults, then the TOML file, then ``--data``, then ``--set`` (last wins)."""
    file_settings = load_toml(config_file) if config_file else {}
    preset_name = preset or check_value("preset", file_settings.get("preset", ""), "tiny", str(config_file))
    preset_name = preset_name or "tiny"
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
            check_keys({name: value}, set(current), "model.")
            typed[key] = coerce(key, value, current[name])
        else:
            check_keys({key: value}, {f.name for f in fields(TrainConfig)} - {"model"}, "")
            typed[key] = coerce(key, value, getattr(cfg, key))
    cfg = apply_settings(cfg, typed, "--set")
    if not cfg.vocab_size:
        cfg.vocab_size = cfg.model.vocab_size
    return cfg.validate()


def config_json(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
