"""The New-run form's logic without widgets: values in, a validated config (or named errors) out.

Pre-training values become ``--set``-style pairs handed to
:func:`engine.config.train.load_train_config`, so the form, ``canvas train --set`` and TOML files
share one validation that names the field (``ConfigError.field``). The form shows the error next
to that field, in the engine's words unchanged: every front end gives the same message.
Fine-tuning values go the same way through :func:`engine.config.finetune.load_finetune_config`
(``canvas finetune --set``), with their defaults read from :class:`FinetuneConfig` itself. No
Textual, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.config.errors import ConfigError
from engine.config.finetune import CHAT_TEMPLATES, QUANTIZATIONS, FinetuneConfig, load_finetune_config
from engine.config.presets import get_preset
from engine.config.train import PRECISIONS, TrainConfig, load_train_config
from engine.data.spec import parse_spec
from engine.preflight import check_nproc
from engine.train.preflight import check_config

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
    values.update(
        preset=preset,
        data=cfg.data,
        length_kind="max_steps",
        length=str(cfg.max_steps),
        precision=cfg.precision,
        device=cfg.device,
        nproc="1",
        name="",
    )
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

    The data spec is checked for syntax only: the data files, the device and the process count are
    :func:`engine.train.preflight.preflight`'s job (it reads the disk, so the form runs it in a worker
    at launch).
    """
    preset = values.get("preset") or "tiny"
    get_preset(preset)  # the engine's message, as `canvas train --preset` gives it
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
    sets.append(f"device={(values.get('device') or '').strip() or 'auto'}")
    data = (values.get("data") or "").strip() or "embedded"
    parse_spec(data, field_name="data")
    cfg = check_config(load_train_config(preset, None, sets, data))
    length = getattr(cfg, kind)
    if not length or length <= 0:
        raise ConfigError(
            kind,
            f"{kind} = {raw} must be more than 0. Fix: e.g. {kind}="
            f"{ {'max_steps': 600, 'epochs': 1, 'max_tokens': 10_000_000}[kind] }.",
        )
    return cfg


def pretrain_nproc(values: dict[str, str]) -> int:
    """The form's process count (``canvas train --nproc``); the engine's message when it is not one."""
    raw = (values.get("nproc") or "").strip() or "1"
    nproc: Any = int(raw) if raw.isdigit() else raw
    if not isinstance(nproc, int) or nproc < 1:
        check_nproc(nproc, "cpu")  # raises: the same words as the launch's preflight
    return nproc


def check_name(name: str) -> str | None:
    """The run name's problem, or None (empty is fine: a name is generated)."""
    name = name.strip()
    if not name:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        return (
            "name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(names are typed on the command line)."
        )
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
    return Estimate(
        cfg.model.num_params(),
        cfg.model.training_memory_bytes(cfg.micro_batch, cfg.seq_len),
        per_step,
        total,
        steps,
    )


# ----------------------------------------------------------------------------------- fine-tuning
#: Text inputs of the fine-tune tab: (key, label). The key is the :class:`FinetuneConfig` key.
FINETUNE_FIELDS: tuple[tuple[str, str], ...] = (
    ("base", "base model"),
    ("data", "conversations"),
    ("lora_r", "LoRA rank"),
    ("lora_alpha", "LoRA alpha"),
    ("lora_dropout", "LoRA dropout"),
    ("lora_target", "LoRA targets"),
    ("seq_len", "sequence length"),
    ("micro_batch", "micro-batch"),
    ("grad_accum", "grad accum"),
    ("lr", "learning rate"),
)
#: Choices of the fine-tune tab: (key, label), each a :class:`FinetuneConfig` key shown as a Select.
FINETUNE_CHOICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("quantization", "quantisation"),
    ("chat_template", "chat template"),
    ("packing", "packing"),
)
#: The order of the fine-tune tab's rows (the run name first and the run length last).
FINETUNE_ORDER = (
    "base",
    "data",
    "chat_template",
    "quantization",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target",
    "seq_len",
    "packing",
    "micro_batch",
    "grad_accum",
    "lr",
)
#: The run-length criteria of a fine-tune, in the order the form offers them.
FT_LENGTH_KEYS = ("epochs", "max_steps")
FT_LENGTH_LABELS = {"epochs": "epochs", "max_steps": "steps"}
_QUANT_LABELS = {"4bit": "4-bit (QLoRA)", "8bit": "8-bit", "none": "none (plain LoRA)"}
QUANT_CHOICES = tuple((_QUANT_LABELS.get(q, q), q) for q in QUANTIZATIONS)
_TEMPLATE_LABELS = {"auto": "auto (base's or ours)", "base": "base (tokenizer's)"}
TEMPLATE_CHOICES = tuple((_TEMPLATE_LABELS.get(t, t), t) for t in CHAT_TEMPLATES)
PACKING_CHOICES = (("off (one chat a row)", "false"), ("on (pack to seq_len)", "true"))
FINETUNE_CHOICES = {
    "quantization": QUANT_CHOICES,
    "chat_template": TEMPLATE_CHOICES,
    "packing": PACKING_CHOICES,
}


def ft_id(key: str) -> str:
    """The widget id of a fine-tune field (``lora_r`` → ``ft-lora_r``)."""
    return "ft-" + key


def finetune_values(cfg: FinetuneConfig | None = None) -> dict[str, str]:
    """The fine-tune form's values for a config (the defaults: :class:`FinetuneConfig`'s own)."""
    cfg = cfg or FinetuneConfig()
    values = {key: _to_text(getattr(cfg, key)) for key, _ in FINETUNE_FIELDS}
    kind = "max_steps" if cfg.max_steps else "epochs"
    values.update(
        name="",
        quantization=cfg.quantization,
        chat_template=cfg.chat_template,
        packing="true" if cfg.packing else "false",
        length_kind=kind,
        length=_to_text(getattr(cfg, kind)),
    )
    return values


def finetune_config(values: dict[str, str]) -> FinetuneConfig:
    """A validated :class:`FinetuneConfig` from the fine-tune form; :class:`ConfigError` names the field.

    The values go through :func:`load_finetune_config` as ``--base``, ``--data`` and ``--set`` pairs,
    exactly as ``canvas finetune`` takes them. The data spec is checked for syntax only; the base,
    the data's files and the LoRA targets are :func:`engine.finetune.preflight.preflight`'s job (it
    reads the disk, so the form runs it in a worker).
    """
    from engine.finetune.chat_data.spec import parse_chat_spec

    defaults = finetune_values()
    sets = []
    for key, label in FINETUNE_FIELDS:
        if key in ("base", "data"):
            continue
        raw = (values.get(key) or "").strip()
        if not raw:
            raise ConfigError(key, f"{label} ({key}) is empty. Fix: enter a value, e.g. {defaults[key]}.")
        sets.append(f"{key}={raw}")
    for key, _ in FINETUNE_CHOICE_FIELDS:
        sets.append(f"{key}={values.get(key) or defaults[key]}")
    kind = values.get("length_kind") or "epochs"
    if kind not in FT_LENGTH_KEYS:
        raise ConfigError("length", f"unknown length kind {kind!r}. Fix: epochs or steps.")
    raw = (values.get("length") or "").strip()
    if not raw:
        raise ConfigError(kind, f"the run length ({FT_LENGTH_LABELS[kind]}) is empty. Fix: enter a number.")
    sets.append(f"{kind}={raw}")
    data = (values.get("data") or "").strip()
    parse_chat_spec(data, field_name="data")
    cfg = load_finetune_config((values.get("base") or "").strip(), None, sets, data)
    if not getattr(cfg, kind) > 0:
        raise ConfigError(
            kind, f"{kind} = {raw} must be more than 0. Fix: e.g. { {'epochs': 1, 'max_steps': 500}[kind] }."
        )
    return cfg


def finetune_slot(field: str) -> str:
    """The form key an error about config ``field`` belongs under (both length keys: ``length``)."""
    return "length" if field in FT_LENGTH_KEYS else field


def finetune_errors(values: dict[str, str]) -> dict[str, str]:
    """Form key → message for the fine-tune values (empty when :func:`finetune_config` accepts them).

    :meth:`FinetuneConfig.validate` stops at the first problem, so each field is also tried on its
    own (the other fields at their defaults): every bad field is highlighted at once.
    """
    try:
        finetune_config(values)
        return {}
    except ConfigError as exc:
        errors = {finetune_slot(exc.field): str(exc)}
    defaults = finetune_values()
    singles = [[key] for key, _ in FINETUNE_FIELDS if key != "base"] + [["length_kind", "length"]]
    for keys in singles:
        probe = dict(defaults, **{k: values.get(k, "") for k in keys})
        try:
            finetune_config(probe)
        except ConfigError as exc:
            errors.setdefault(finetune_slot(exc.field), str(exc))
    return errors


PRECISION_CHOICES = tuple((p, p) for p in PRECISIONS)
