"""Data: sources, the embedded offline corpus, tokenizers, packed token files and the batch loader.

Importing this package is cheap and torch-free: the console imports :mod:`engine.data.spec` to
check a spec as the user types (the syntax it shares with fine-tuning data is
:mod:`engine.data.grammar`). ``datasets``, ``tokenizers`` and ``torch`` are imported only by
the functions that use them; the names below resolve lazily.

The training loop needs two calls::

    prepared = prepare("embedded", TokenizerConfig(vocab_size=4096), val_fraction=0.02, seed=1337)
    loader = TokenLoader(prepared.train, seq_len=256, micro_batch=8, seed=1337, rank=0, world_size=1)
    x, y = loader.next_batch()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.data.progress import DataProgress, ProgressCallback
from engine.data.spec import (
    DEFAULT_SPEC,
    PRESETS,
    DataSpec,
    SourceSpec,
    parse_spec,
    spec_from_obj,
    validate_spec,
)

if TYPE_CHECKING:  # pragma: no cover
    from engine.data.loader import TokenLoader
    from engine.data.manifest import Manifest
    from engine.data.packing import PreparedData, prepare
    from engine.data.tokenizer import TokenizerConfig

_LAZY = {
    "Manifest": "engine.data.manifest",
    "prepare": "engine.data.packing",
    "PreparedData": "engine.data.packing",
    "TokenLoader": "engine.data.loader",
    "TokenizerConfig": "engine.data.tokenizer",
}

__all__ = [
    "DEFAULT_SPEC",
    "PRESETS",
    "DataProgress",
    "DataSpec",
    "Manifest",
    "PreparedData",
    "ProgressCallback",
    "SourceSpec",
    "TokenLoader",
    "TokenizerConfig",
    "parse_spec",
    "prepare",
    "spec_from_obj",
    "validate_spec",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.data' has no attribute {name!r}")
