"""Torch-free configuration: dataclasses, presets and validation errors.

The names are imported on first use (PEP 562): ``from engine.config.errors import ConfigError``
(what the command line and the console need at start-up) does not load the model and preset
dataclasses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.config.errors import ConfigError
    from engine.config.model import ModelConfig, llama_ffn_dim
    from engine.config.presets import PRESETS, Preset, get_preset

__all__ = ["PRESETS", "ConfigError", "ModelConfig", "Preset", "get_preset", "llama_ffn_dim"]

_MODULE_OF = {
    "ConfigError": "errors",
    "ModelConfig": "model",
    "llama_ffn_dim": "model",
    "PRESETS": "presets",
    "Preset": "presets",
    "get_preset": "presets",
}

__getattr__, __dir__ = lazy_exports(__name__, globals(), _MODULE_OF)
