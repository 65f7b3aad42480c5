"""Interoperability with ``transformers``: export to, and import from, ``LlamaForCausalLM`` folders.

Because the parameter names already match, both directions are a config translation plus a copy
of the tensors; the parity tests prove the logits agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from engine.config.errors import ConfigError
from engine.config.model import ModelConfig
from engine.model.llama import CausalLM
from engine.model.weights import atomic_dir, build_with_weights, export_state_dict, read_state_dict

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
)

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def to_hf_config(
    cfg: ModelConfig, *, dtype: torch.dtype = torch.float32, token_ids: dict[str, int | None] | None = None
) -> dict:
    """A ``config.json`` for ``LlamaConfig``. ``rope_theta`` is written both the transformers 5 way
    (``rope_parameters``) and the 4.x way, so either major version loads it."""
    ids = token_ids or {}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "use_cache": True,
        "bos_token_id": ids.get("bos_token_id"),
        "eos_token_id": ids.get("eos_token_id"),
        "pad_token_id": ids.get("pad_token_id"),
        "torch_dtype": _DTYPE_NAMES[dtype],
        "dtype": _DTYPE_NAMES[dtype],
    }


def from_hf_config(hf: dict, source: str = "config.json") -> ModelConfig:
    """Translate a Llama ``config.json``; refuse (by field) what this model does not implement."""
    model_type = hf.get("model_type")
    if model_type != "llama":
        raise ConfigError(
            "model_type",
            f"{source}: model_type is {model_type!r}, but only 'llama' "
            "checkpoints can be imported into the scratch model. Fix: fine-tune such a "
            "model with `canvas finetune --base` instead, which runs it through transformers.",
        )

    def refuse(key: str, value: object, want: str) -> None:
        raise ConfigError(
            key,
            f"{source}: {key} = {value!r} is not supported by the scratch model "
            f"(it implements {want}). Fix: fine-tune this model through transformers "
            "with `canvas finetune --base` instead of importing it.",
        )

    if hf.get("hidden_act", "silu") != "silu":
        refuse("hidden_act", hf["hidden_act"], "SwiGLU with silu")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            refuse(key, hf[key], "bias-free projections")
    if hf.get("pretraining_tp", 1) != 1:
        refuse("pretraining_tp", hf["pretraining_tp"], "pretraining_tp = 1")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", None):
        refuse("rope_parameters.rope_type", rope_type, "plain rotary embeddings without scaling")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    if head_dim * heads != hf["hidden_size"]:
        refuse("head_dim", head_dim, "head_dim = hidden_size / num_attention_heads")
    return ModelConfig(
        vocab_size=hf["vocab_size"],
        dim=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads,
        ffn_dim=hf["intermediate_size"],
        max_seq_len=hf.get("max_position_embeddings", 2048),
        rope_theta=float(theta),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        init_std=hf.get("initializer_range", 0.02),
    )


def export_hf(
    model: CausalLM,
    out_dir: Path,
    *,
    tokenizer_dir: Path | None = None,
    dtype: torch.dtype = torch.float32,
    token_ids: dict[str, int | None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a folder that ``AutoModelForCausalLM.from_pretrained`` loads as ``LlamaForCausalLM``.

    The tokenizer's files are copied alongside when ``tokenizer_dir`` is given, so
    ``AutoTokenizer.from_pretrained(out_dir)`` works on the same folder.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_file(export_state_dict(model, dtype), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = to_hf_config(model.config, dtype=dtype, token_ids=token_ids)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        gen = {k: v for k, v in config.items() if k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                if (Path(tokenizer_dir) / name).is_file():
                    shutil.copy2(Path(tokenizer_dir) / name, tmp / name)
    return out_dir


def load_hf_llama(
    path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> CausalLM:
    """Import a local Hugging Face Llama folder (safetensors, sharded or not, or .bin)."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(
            "base",
            f"{path} has no config.json, so it is not a Hugging Face model "
            "folder. Fix: point at the folder that holds config.json and the weights.",
        )
    cfg = from_hf_config(json.loads(cfg_file.read_text()), source=str(cfg_file))
    return build_with_weights(cfg, read_state_dict(path), device=device, dtype=dtype, source=str(path))


def token_ids_from_tokenizer(tokenizer_dir: Path) -> dict[str, int | None]:
    """BOS/EOS/PAD ids read from a saved tokenizer, so the exported config names them too."""
    tokenizer_dir = Path(tokenizer_dir)
    vocab: dict[str, int] = {}
    tok_file = tokenizer_dir / "tokenizer.json"
    if tok_file.is_file():
        data = json.loads(tok_file.read_text())
        vocab = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
        vocab.update(data.get("model", {}).get("vocab", {}) or {})
    cfg_file = tokenizer_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}

    def lookup(key: str) -> int | None:
        token = cfg.get(key)
        if isinstance(token, dict):
            token = token.get("content")
        return vocab.get(token) if isinstance(token, str) else None

    return {f"{k}_id": lookup(k) for k in ("bos_token", "eos_token", "pad_token")}
