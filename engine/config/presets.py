"""Named model shapes, in one registry (litgpt's ``config_hub`` idea, as data not code)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config.errors import ConfigError
from engine.config.model import ModelConfig


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    model: ModelConfig
    micro_batch: int
    seq_len: int


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="tiny",
            summary="~5.8M parameters; trains visibly on 2 CPU cores in minutes (the demo model).",
            model=ModelConfig(
                vocab_size=4096,
                dim=256,
                n_layers=6,
                n_heads=8,
                n_kv_heads=4,
                max_seq_len=256,
                tie_embeddings=True,
            ),
            micro_batch=8,
            seq_len=256,
        ),
        Preset(
            name="seed-base",
            summary=(
                "The original README's model: 12 layers, width 1024, 16 heads, 4 KV heads, context "
                "2048. The README calls it 1.2B; these dimensions give ~201M parameters."
            ),
            model=ModelConfig(
                vocab_size=32000, dim=1024, n_layers=12, n_heads=16, n_kv_heads=4, max_seq_len=2048
            ),
            micro_batch=8,
            seq_len=2048,
        ),
        Preset(
            name="seed-1b",
            summary=(
                "A true ~1.2B model (TinyLlama-like widths): 24 layers, width 2048, 32 heads, "
                "8 KV heads, context 2048."
            ),
            model=ModelConfig(
                vocab_size=32000,
                dim=2048,
                n_layers=24,
                n_heads=32,
                n_kv_heads=8,
                ffn_dim=5632,
                max_seq_len=2048,
            ),
            micro_batch=4,
            seq_len=2048,
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            "preset",
            f"unknown preset {name!r}. Fix: use one of {', '.join(PRESETS)} "
            "(`canvas info --presets` lists their sizes).",
        ) from None
