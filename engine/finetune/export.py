"""Exporting a fine-tune: the adapter alone, or merged into its base as a plain transformers model.

The merge goes into the base in full precision (``--dtype``, float32 by default), not into the
4-bit weights the adapters were trained against: that is what gets deployed, and re-quantising a
merged model is lossy twice. The merged model's logits equal the unquantised base plus adapter
(a test proves it); they differ from the 4-bit training model by the quantisation error only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from engine.config.finetune import FinetuneConfig
from engine.finetune.base import resolve_base
from engine.finetune.qlora import ADAPTER_CONFIG, ADAPTER_FILES, ADAPTER_WEIGHTS, hf_source, load_with_adapter
from engine.model.weights import atomic_dir
from engine.runs.store import RunDir

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
)


def base_source(run: RunDir) -> str:
    """The base this run trained on: recorded at its start, or found again from its config."""
    meta = run.read_meta()
    recorded = meta.base_source
    if recorded and (Path(recorded).is_dir() or not Path(recorded).is_absolute()):
        return recorded
    cfg = FinetuneConfig.from_dict(meta.config)
    return hf_source(resolve_base(cfg.base, cfg.base_checkpoint), run.path)


def _tokenizer_dir(run: RunDir, source: str) -> Path | None:
    for folder in (run.path / "adapter", Path(source)):
        if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
            return folder
    return None


def export_adapter(
    run: RunDir, checkpoint: Path, out: Path, *, dtype: torch.dtype = torch.float32, overwrite: bool = False
) -> int:
    """Copy the adapter (cast to ``dtype``: bfloat16 halves it) and the tokenizer it was trained
    with; returns the adapter's bytes."""
    from safetensors.torch import load_file, save_file

    with atomic_dir(out, overwrite=overwrite) as tmp:
        shutil.copy2(checkpoint / ADAPTER_CONFIG, tmp / ADAPTER_CONFIG)
        weights = load_file(str(checkpoint / ADAPTER_WEIGHTS))
        save_file(
            {k: v.to(dtype) for k, v in weights.items()},
            str(tmp / ADAPTER_WEIGHTS),
            metadata={"format": "pt"},
        )
        tokenizer = _tokenizer_dir(run, base_source(run))
        for name in TOKENIZER_FILES if tokenizer else ():
            if (tokenizer / name).is_file():
                shutil.copy2(tokenizer / name, tmp / name)
    return sum((out / n).stat().st_size for n in ADAPTER_FILES)


def export_merged(
    run: RunDir, checkpoint: Path, out: Path, *, dtype: torch.dtype = torch.float32, overwrite: bool = False
) -> Path:
    """Merge the checkpoint's adapter into the full-precision base and save a transformers folder."""
    cfg = FinetuneConfig.from_dict(run.read_meta().config)
    source = base_source(run)
    model = load_with_adapter(source, checkpoint, cfg, torch.device("cpu"), dtype, quantize=False)
    merged = model.merge_and_unload()
    tokenizer = _tokenizer_dir(run, source)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        for name in TOKENIZER_FILES if tokenizer else ():
            if (tokenizer / name).is_file():
                shutil.copy2(tokenizer / name, tmp / name)
    return out
