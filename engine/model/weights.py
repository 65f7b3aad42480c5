"""Reading and writing model weights: our own weights folder, and state-dict files of any layout.

Our weights folder is ``model.safetensors`` (parameter names exactly as ``LlamaForCausalLM``'s)
plus ``model_config.json`` (the :class:`ModelConfig`). Folders are written under a temporary name
and renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from engine.config.errors import ConfigError
from engine.config.model import ModelConfig
from engine.model.llama import CausalLM, RotaryEmbedding

WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "model_config.json"


@contextmanager
def atomic_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``final`` to fill; rename it to ``final`` only on success."""
    final = Path(final)
    if final.exists() and not overwrite and any(final.iterdir()):
        raise ConfigError(
            "output",
            f"output directory {final} already exists and is not empty. "
            "Fix: choose a new directory, or remove that one first.",
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_state_dict(model: CausalLM, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The state dict as it is saved: tied heads dropped (HF re-ties them), contiguous, on CPU."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_embeddings:
            continue
        t = tensor.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[name] = t.contiguous()
    return out


def save_model(
    model: CausalLM, directory: Path, dtype: torch.dtype | None = None, overwrite: bool = True
) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    with atomic_dir(directory, overwrite=overwrite) as tmp:
        save_file(export_state_dict(model, dtype), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / MODEL_CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    return directory


def load_model(
    directory: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> CausalLM:
    directory = Path(directory)
    cfg_path = directory / MODEL_CONFIG_FILE
    if not cfg_path.is_file():
        raise ConfigError(
            "checkpoint",
            f"{directory} holds no {MODEL_CONFIG_FILE}, so it is not a "
            "Neural Canvas weights folder. Fix: point at a run's checkpoint folder, or "
            "use load_hf_llama() for a Hugging Face model folder.",
        )
    cfg = ModelConfig.from_dict(json.loads(cfg_path.read_text()))
    return build_with_weights(
        cfg, read_state_dict(directory), device=device, dtype=dtype, source=str(directory)
    )


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor in a model folder: single or sharded safetensors, or (legacy) pytorch .bin."""
    directory = Path(directory)
    single = directory / WEIGHTS_FILE
    index = directory / "model.safetensors.index.json"
    bin_single = directory / "pytorch_model.bin"
    bin_index = directory / "pytorch_model.bin.index.json"
    if single.is_file():
        from safetensors.torch import load_file

        return load_file(str(single))
    if index.is_file():
        from safetensors.torch import load_file

        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(load_file(str(directory / shard)))
        return out
    if bin_single.is_file():
        return torch.load(bin_single, map_location="cpu", weights_only=True)
    if bin_index.is_file():
        shards = sorted(set(json.loads(bin_index.read_text())["weight_map"].values()))
        out = {}
        for shard in shards:
            out.update(torch.load(directory / shard, map_location="cpu", weights_only=True))
        return out
    found = sorted(p.name for p in directory.iterdir())[:12] if directory.is_dir() else []
    raise ConfigError(
        "checkpoint",
        f"no weights in {directory}: expected {WEIGHTS_FILE}, a sharded "
        "model.safetensors.index.json, or pytorch_model.bin; found "
        f"{found or 'nothing (is the path right?)'}.",
    )


def build_with_weights(
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    source: str,
) -> CausalLM:
    """Construct on the meta device (no memory for random init), then adopt the loaded tensors.

    Names are checked against the model's own before anything is assigned, so a foreign or
    truncated checkpoint fails with the list of what is missing rather than a shape error deep in
    torch.
    """
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    with torch.device("meta"):
        model = CausalLM(cfg)
    expected = {k for k in model.state_dict() if not (cfg.tie_embeddings and k == "lm_head.weight")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ConfigError(
            "checkpoint",
            f"the weights in {source} do not fit the model described by "
            f"its config: missing {missing[:5]}{' …' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}. Fix: "
            "make sure config and weights come from the same model.",
        )
    for name, tensor in model.state_dict().items():
        if name in state and tuple(state[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                "checkpoint",
                f"{source}: tensor {name} has shape "
                f"{tuple(state[name].shape)}, the config implies {tuple(tensor.shape)}.",
            )
    state = {
        k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()
    }
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    # Non-persistent buffers were created on meta: rebuild them on the real device.
    model.model.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta).to(device)
    return model
