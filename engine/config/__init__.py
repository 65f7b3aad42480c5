"""Torch-free configuration: dataclasses, presets and validation errors."""

from engine.config.errors import ConfigError
from engine.config.model import ModelConfig, llama_ffn_dim
from engine.config.presets import PRESETS, Preset, get_preset

__all__ = ["PRESETS", "ConfigError", "ModelConfig", "Preset", "get_preset", "llama_ffn_dim"]
