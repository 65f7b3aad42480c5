"""A tiny Hugging Face Llama with a real tokenizer, saved the way a downloaded base is."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.data.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer


def tiny_tokenizer(folder: Path, vocab_size: int = 512) -> Path:
    """A byte-level BPE (our specials and ChatML template) trained on a slice of the stdlib docs."""
    from engine.data.embedded import documents

    texts = documents()[:300]
    tok = train_tokenizer([texts], TokenizerConfig(vocab_size=vocab_size))
    return save_tokenizer(tok, Path(folder))


def tiny_base(folder: Path, tokenizer: Path, *, seed: int = 0, template: bool = True) -> Path:
    """A 2-layer GQA Llama (random weights) + tokenizer, written by ``save_pretrained``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    cfg = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(tokenizer / name, folder / name)
    if not template:
        import json

        config = json.loads((folder / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def train_tiny_finetune(tmp_path: Path, name: str) -> Path:
    """A real fine-tune run named ``name``, trained by ``canvas finetune`` for 4 steps on a tiny
    base (:func:`tiny_base`, seed 2) and 40 embedded conversations; returns the base's folder.
    The caller points ``CANVAS_CACHE`` at the session's prepared corpus first."""
    from tests.lifecycle_helpers import canvas

    base = tiny_base(tmp_path / "llama", tiny_tokenizer(tmp_path / "tok"), seed=2)
    out = canvas(
        "finetune",
        "--base", str(base), "--data", "embedded?limit=40", "--name", name,
        "--set", "max_steps=4", "--set", "seq_len=96", "--set", "micro_batch=2", "--set", "grad_accum=1",
        "--set", "lora_r=4", "--set", "lr=5e-2", "--set", "eval_batches=1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return base
