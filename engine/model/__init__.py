"""The Llama-style model (engine side: imports torch)."""

from engine.model.cache import KVCache
from engine.model.generate import SamplingParams, generate, stream, stream_text_tokens
from engine.model.hf import export_hf, from_hf_config, load_hf_llama, to_hf_config
from engine.model.llama import CausalLM
from engine.model.weights import load_model, save_model

__all__ = [
    "CausalLM",
    "KVCache",
    "SamplingParams",
    "export_hf",
    "from_hf_config",
    "generate",
    "load_hf_llama",
    "load_model",
    "save_model",
    "stream",
    "stream_text_tokens",
    "to_hf_config",
]
