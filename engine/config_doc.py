"""The README's run config reference, generated from the config dataclasses so it cannot drift.

Keys, types and defaults come from :class:`engine.config.train.TrainConfig` (with the ``tiny``
preset applied, as ``canvas train`` does with no flags), :class:`engine.config.finetune.FinetuneConfig`
and :class:`engine.config.model.ModelConfig` with the presets; meanings from
:mod:`engine.config.docs`. The README holds the output between :data:`BEGIN` and :data:`END`;
``python -m engine.config_doc --write README.md`` regenerates it, ``--check README.md`` exits 1 when
it differs (``tests/test_readme_reference.py`` runs the check), and without either the block is
printed. Torch-free.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from engine.config.docs import MEANINGS, MODEL_MEANINGS
from engine.config.finetune import FinetuneConfig
from engine.config.model import ModelConfig
from engine.config.presets import PRESETS
from engine.config.settings import kind_name
from engine.config.train import TrainConfig, load_train_config
from engine.docblock import DocBlock, cell, table


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" else f"`{value}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def missing_meanings() -> list[str]:
    """Keys of the configs that :mod:`engine.config.docs` does not explain yet."""
    flat = {f.name for cls in (TrainConfig, FinetuneConfig) for f in dataclasses.fields(cls)}
    model = {f.name for f in dataclasses.fields(ModelConfig)}
    return sorted(flat - set(MEANINGS)) + sorted(f"model.{k}" for k in model - set(MODEL_MEANINGS))


def _meaning(meanings: dict[str, str], key: str) -> str:
    return cell(meanings.get(key) or f"(undocumented: add {key!r} to engine/config/docs.py)")


def run_keys_table() -> str:
    """Every flat key: its type, ``canvas train``'s and ``canvas finetune``'s default, its meaning."""
    train = load_train_config()  # the defaults a bare `canvas train` runs with (the tiny preset)
    finetune = FinetuneConfig()
    train_keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model"]
    finetune_keys = [f.name for f in dataclasses.fields(FinetuneConfig)]
    order = train_keys + [k for k in finetune_keys if k not in train_keys]
    rows = []
    for key in order:
        example = getattr(train, key) if key in train_keys else getattr(finetune, key)
        pre = _value(getattr(train, key)) if key in train_keys else "—"
        ft = _value(getattr(finetune, key)) if key in finetune_keys else "—"
        rows.append([f"`{key}`", kind_name(example), pre, ft, _meaning(MEANINGS, key)])
    header = ["key", "type", "`canvas train` default", "`canvas finetune` default", "meaning"]
    return "\n".join(table(header, rows))


def model_keys_table() -> str:
    """The ``model.*`` keys: type, the dataclass default (0: derived), each preset's value, meaning."""
    presets = list(PRESETS.values())
    rows = [
        [
            f"`model.{f.name}`",
            kind_name(f.default),
            _value(f.default),
            *(_value(getattr(p.model, f.name)) for p in presets),
            _meaning(MODEL_MEANINGS, f.name),
        ]
        for f in dataclasses.fields(ModelConfig)
    ]
    header = ["key", "type", "default", *(f"`{p.name}`" for p in presets), "meaning"]
    return "\n".join(table(header, rows))


def body() -> list[str]:
    """The block's text: the run keys' table, then the model keys'."""
    return [
        "Run keys (`--set KEY=VALUE`, or `KEY = VALUE` at the top of a `--config` TOML file). "
        "`canvas train`'s defaults are those of the `tiny` preset; another preset changes "
        "`lr`, `max_steps`, `seq_len`, `micro_batch`, `vocab_size` and the model. A dash: the "
        "kind has no such key.",
        "",
        run_keys_table(),
        "",
        "Model keys, pre-training only (`--set model.dim=512`, or a `[model]` table in TOML); "
        "changing `model.dim` re-derives `model.ffn_dim` unless that is set too:",
        "",
        model_keys_table(),
    ]


BLOCK = DocBlock(
    "config",
    "engine.config_doc",
    "engine/config/{loop,train,finetune,model,presets,docs}.py",
    body,
    what="run config reference",
    stale="the run config reference differs from the config dataclasses; regenerate it with `{regenerate}`.",
    description=__doc__,
)
BEGIN, END, REGENERATE = BLOCK.begin, BLOCK.end, BLOCK.regenerate
render, current_block, write, main = BLOCK.render, BLOCK.current, BLOCK.write, BLOCK.main


if __name__ == "__main__":
    sys.exit(main())
