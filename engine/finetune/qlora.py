"""Loading a base quantised (bitsandbytes) and wrapping it with LoRA adapters (peft).

The QLoRA recipe (Dettmers et al., 2023): the frozen base in 4-bit NormalFloat with double
quantisation and bf16 compute; ``prepare_model_for_kbit_training`` (norms and head in fp32,
input gradients for checkpointing); LoRA on every linear projection of the blocks. Only the
adapters train, so a checkpoint is the adapter (megabytes) plus the optimizer state, never the
base. bitsandbytes 0.50 runs the 4-bit kernels on CPU too, so this file is exercised here for real.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from engine.config.finetune import FinetuneConfig
from engine.finetune.base import BaseModel, lora_targets, weight_shapes

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG)


def hf_source(base: BaseModel, run_dir: Path) -> str:
    """What ``from_pretrained`` loads: our weights are exported to ``<run>/base/`` once (kept, so a
    resume and ``canvas export --merged`` use the very same base)."""
    if base.kind != "ours":
        return str(base.path) if base.path is not None else base.name
    out = Path(run_dir) / "base"
    if (out / "config.json").is_file():
        return str(out)
    from engine.model.hf import export_hf, token_ids_from_tokenizer
    from engine.model.weights import load_model

    assert base.path is not None
    tokenizer = _our_tokenizer(base)
    export_hf(
        load_model(base.path),
        out,
        tokenizer_dir=tokenizer,
        dtype=torch.float32,
        token_ids=token_ids_from_tokenizer(tokenizer) if tokenizer else None,
        overwrite=True,
    )
    return str(out)


def _our_tokenizer(base: BaseModel) -> Path | None:
    """A run keeps its tokenizer beside its checkpoints (``<run>/tokenizer``)."""
    assert base.path is not None
    for folder in (base.path, base.path.parent.parent / "tokenizer"):
        if (folder / "tokenizer.json").is_file():
            return folder
    return None


def quantization_config(cfg: FinetuneConfig, compute_dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.quant_type,
            bnb_4bit_use_double_quant=cfg.double_quant,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def quiet_libraries() -> None:
    """Keep third-party chatter out of our output: transformers' FutureWarnings about its own
    checkpointing names (peft calls the old ones; nothing the user can change) and bitsandbytes'
    note that an optional CPU kernel package is absent. Our messages only."""
    import logging
    import warnings

    warnings.filterwarnings(
        "ignore",
        message=r"`(gradient_checkpointing_enable|gradient_checkpointing_disable|is_gradient_checkpointing)` "
        r"is deprecated",
        category=FutureWarning,
    )
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def load_base_model(
    source: str, cfg: FinetuneConfig, device: torch.device, dtype: torch.dtype, *, quantize: bool = True
) -> Any:
    """The base as ``cfg`` asks (or unquantised in ``dtype`` with ``quantize=False``, for merging)."""
    quiet_libraries()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # engine.log is a file: no carriage-return bars in it
    quant = quantization_config(cfg, dtype) if quantize else None
    kwargs: dict[str, Any] = dict(dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    if quant is not None:
        kwargs["quantization_config"] = quant
        if device.type == "cuda":  # bitsandbytes places quantised weights while loading
            kwargs["device_map"] = {"": device.index or 0}
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if quant is None:
        model.to(device)
    return model


def add_lora(model: Any, cfg: FinetuneConfig, targets: list[str] | str) -> Any:
    """Freeze the base, make it trainable through checkpointing, and wrap it with fresh adapters."""
    quiet_libraries()
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    checkpointing = {"use_reentrant": False}  # the reentrant variant needs inputs that require grad
    if cfg.quantization != "none":
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs=checkpointing,
        )
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """``model.eval()`` for the duration (dropout off), keeping bitsandbytes' 4-bit layers in
    training mode, then back to training.

    Why: on a CPU with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight for a faster
    inference kernel the first time the layer sees an eval-mode forward without gradients, for
    good; that kernel (``gemv_4bit``) has no backward, so every later training step computes wrong
    gradients through the base (measured: 87% relative error on the first layer's LoRA gradients
    after one validation pass). Their forward is the same in either mode.
    """
    model.eval()
    for module in model.modules():
        if _is_bnb_4bit(module):
            module.training = True
    try:
        yield
    finally:
        model.train()


def _is_bnb_4bit(module: Any) -> bool:
    """bitsandbytes' own 4-bit layer (not peft's LoRA wrapper of it, which shares the class name)."""
    cls = type(module)
    names = ("Linear4bit", "LinearNF4", "LinearFP4")
    return cls.__module__.startswith("bitsandbytes") and cls.__name__ in names


def resolve_targets(cfg: FinetuneConfig, source: str) -> list[str] | str:
    folder = Path(source)
    return lora_targets(cfg.target_modules(), weight_shapes(folder) if folder.is_dir() else None)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, all) parameters; a 4-bit weight counts as the parameters it stands for."""
    trainable, total = model.get_nb_trainable_parameters()
    return int(trainable), int(total)


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def save_adapter(model: Any, directory: Path, base_name: str | None = None) -> None:
    """``adapter_model.safetensors`` + ``adapter_config.json``: what ``PeftModel.from_pretrained``
    reads; with ``base_name`` (a Hub id or a folder) ``AutoPeftModelForCausalLM`` finds the base too."""
    from safetensors.torch import save_file

    directory = Path(directory)
    save_file(adapter_state(model), str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config = model.peft_config["default"].to_dict()
    config["base_model_name_or_path"] = base_name
    for key, value in list(config.items()):
        if isinstance(value, set):
            config[key] = sorted(value)
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_adapter_weights(model: Any, directory: Path) -> None:
    """Put saved adapter weights into a model wrapped with the same LoRA config (exact copy)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(Path(directory) / ADAPTER_WEIGHTS)))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise RuntimeError(f"adapter in {directory} has weights the model does not: {unexpected[:5]}")


def load_with_adapter(
    source: str,
    adapter_dir: Path,
    cfg: FinetuneConfig,
    device: torch.device,
    dtype: torch.dtype,
    *,
    quantize: bool = True,
) -> Any:
    """A base (quantised as trained, or not) with a saved adapter, ready for inference."""
    quiet_libraries()
    from peft import PeftModel, prepare_model_for_kbit_training

    model = load_base_model(source, cfg, device, dtype, quantize=quantize)
    if quantize and cfg.quantization != "none":
        # As in training: norms, embeddings and head in fp32 around the 4-bit layers, so the
        # reloaded model computes exactly what the trained one did.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    return model.eval()


def copy_adapter(src: Path, dest: Path) -> int:
    """Copy an adapter's files; returns their size in bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    size = 0
    for name in ADAPTER_FILES:
        shutil.copy2(Path(src) / name, dest / name)
        size += (dest / name).stat().st_size
    return size


def build_optimizer(model: Any, cfg: FinetuneConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the adapters only, or bitsandbytes' 8-bit / paged variants."""
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, eps=1e-8, fused=device.type == "cuda", **kwargs)
    import bitsandbytes as bnb

    cls = {
        "adamw_8bit": bnb.optim.AdamW8bit,
        "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
        "paged_adamw": bnb.optim.PagedAdamW,
    }[cfg.optimizer]
    return cls(params, **kwargs)
