"""The New-run form's logic without widgets: values in, a validated config (or named errors) out.

Pre-training values become ``--set``-style pairs handed to
:func:`engine.config.train.load_train_config`, so the form, ``canvas train --set`` and TOML files
share one validation that names the field (``ConfigError.field``). The form shows the error next
to that field. Fine-tuning has its own local checks until the QLoRA engine lands.
No Textual, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.config.errors import ConfigError
from engine.config.presets import PRESETS
from engine.config.train import PRECISIONS, TrainConfig, load_train_config
from engine.data.spec import parse_spec

#: Form fields of the pre-training tab: (key, label). The key is the run-config key.
PRETRAIN_FIELDS: tuple[tuple[str, str], ...] = (
    ("model.dim", "width (dim)"),
    ("model.n_layers", "layers"),
    ("model.n_heads", "heads"),
    ("model.n_kv_heads", "KV heads"),
    ("model.vocab_size", "vocabulary"),
    ("model.max_seq_len", "model context"),
    ("seq_len", "train context"),
    ("micro_batch", "micro-batch"),
    ("grad_accum", "grad accum"),
    ("lr", "learning rate"),
)
LENGTH_KEYS = ("max_steps", "epochs", "max_tokens")
LENGTH_LABELS = {"max_steps": "steps", "epochs": "epochs", "max_tokens": "tokens"}


def field_id(key: str) -> str:
    """The widget id of a form field (``model.n_heads`` → ``f-model-n_heads``)."""
    return "f-" + key.replace(".", "-")


def preset_values(preset: str) -> dict[str, str]:
    """The form's values for a preset, as the strings the inputs show."""
    cfg = load_train_config(preset)
    values = {key: _to_text(_get(cfg, key)) for key, _ in PRETRAIN_FIELDS}
    values.update(preset=preset, data=cfg.data, length_kind="max_steps", length=str(cfg.max_steps),
                  precision=cfg.precision, name="")
    return values


def _get(cfg: TrainConfig, key: str) -> Any:
    if key.startswith("model."):
        return getattr(cfg.model, key.removeprefix("model."))
    return getattr(cfg, key)


def _to_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def pretrain_config(values: dict[str, str]) -> TrainConfig:
    """A validated :class:`TrainConfig` from the form's values; :class:`ConfigError` names the field.

    The data spec is checked for syntax only (paths are checked off the UI thread at launch).
    """
    preset = values.get("preset") or "tiny"
    if preset not in PRESETS:
        raise ConfigError("preset", f"unknown preset {preset!r}. Fix: choose one of {', '.join(PRESETS)}.")
    sets = []
    for key, label in PRETRAIN_FIELDS:
        raw = (values.get(key) or "").strip()
        if not raw:
            raise ConfigError(key, f"{label} ({key}) is empty. Fix: enter a number.")
        sets.append(f"{key}={raw}")
    kind = values.get("length_kind") or "max_steps"
    if kind not in LENGTH_KEYS:
        raise ConfigError("length", f"unknown length kind {kind!r}. Fix: steps, epochs or tokens.")
    raw = (values.get("length") or "").strip()
    if not raw:
        raise ConfigError(kind, f"the run length ({LENGTH_LABELS[kind]}) is empty. Fix: enter a number.")
    sets.append(f"{kind}={raw}")
    precision = values.get("precision") or "auto"
    sets.append(f"precision={precision}")
    data = (values.get("data") or "").strip() or "embedded"
    parse_spec(data, field_name="data")
    cfg = load_train_config(preset, None, sets, data)
    length = getattr(cfg, kind)
    if not length or length <= 0:
        raise ConfigError(kind, f"{kind} = {raw} must be more than 0. Fix: e.g. {kind}="
                          f"{ {'max_steps': 600, 'epochs': 1, 'max_tokens': 10_000_000}[kind] }.")
    return cfg


def check_name(name: str) -> str | None:
    """The run name's problem, or None (empty is fine: a name is generated)."""
    name = name.strip()
    if not name:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        return ("name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
                "(names are typed on the command line).")
    return None


@dataclass(frozen=True)
class Estimate:
    params: int
    memory: dict[str, int]
    tokens_per_step: int
    total_tokens: int | None
    steps: int | None


def estimate(cfg: TrainConfig) -> Estimate:
    """Parameter count and training-memory estimate of a config (pure arithmetic)."""
    per_step = cfg.micro_batch * cfg.seq_len * cfg.accumulation()
    steps = cfg.max_steps or (cfg.max_tokens // per_step if cfg.max_tokens else None)
    total = steps * per_step if steps else (cfg.max_tokens or None)
    return Estimate(cfg.model.num_params(), cfg.model.training_memory_bytes(cfg.micro_batch, cfg.seq_len),
                    per_step, total, steps)


# ----------------------------------------------------------------------------------- fine-tuning
FINETUNE_DEFAULTS = {
    "ft-base": "",
    "ft-data": "",
    "ft-lora_r": "16",
    "ft-lora_alpha": "32",
    "ft-lora_dropout": "0.05",
    "ft-target_modules": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    "ft-quant": "4bit",
    "ft-lr": "2e-4",
    "ft-epochs": "3",
}
QUANT_CHOICES = (("4-bit NF4 (QLoRA)", "4bit"), ("8-bit", "8bit"), ("none (bf16 LoRA)", "none"))
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def finetune_errors(values: dict[str, str], path_exists=None) -> dict[str, str]:
    """Field id → message for every problem in the fine-tuning values (empty when all is well).

    ``path_exists`` checks local base-model paths (a callable, so the UI can skip disk access).
    """
    errors: dict[str, str] = {}
    base = values.get("ft-base", "").strip()
    if not base:
        errors["ft-base"] = "base model: give a local folder or a Hub id such as meta-llama/Llama-3.2-1B."
    elif not _HUB_ID.match(base) and path_exists is not None and not path_exists(base):
        errors["ft-base"] = f"base model: {base!r} is neither an existing folder nor a Hub id (org/name)."
    data = values.get("ft-data", "").strip()
    if not data:
        errors["ft-data"] = "dataset: give a data spec, e.g. hf:tatsu-lab/alpaca or train.jsonl#text."
    else:
        try:
            parse_spec(data, field_name="dataset")
        except ConfigError as exc:
            errors["ft-data"] = str(exc)
    for key, label, kind, lo, hi in (
        ("ft-lora_r", "LoRA rank", int, 1, 4096), ("ft-lora_alpha", "LoRA alpha", float, 1e-9, 1e6),
        ("ft-lora_dropout", "LoRA dropout", float, 0.0, 0.999), ("ft-lr", "learning rate", float, 1e-12, 1.0),
        ("ft-epochs", "epochs", float, 1e-9, 1e4),
    ):
        raw = values.get(key, "").strip()
        try:
            value = kind(float(raw)) if kind is int and float(raw).is_integer() else kind(raw)
        except ValueError:
            errors[key] = f"{label}: {raw!r} is not a {'whole number' if kind is int else 'number'}."
            continue
        if not lo <= value <= hi:
            errors[key] = f"{label}: {raw} is out of range ({lo:g} to {hi:g})."
    modules = [m.strip() for m in values.get("ft-target_modules", "").split(",")]
    if not any(modules) or not all(re.fullmatch(r"[A-Za-z_][\w.]*", m) for m in modules):
        errors["ft-target_modules"] = ("target modules: a comma-separated list of module names, "
                                       "e.g. q_proj,v_proj.")
    if values.get("ft-quant") not in {v for _, v in QUANT_CHOICES}:
        errors["ft-quant"] = "quantisation: choose 4-bit, 8-bit or none."
    return errors


PRECISION_CHOICES = tuple((p, p) for p in PRECISIONS)
