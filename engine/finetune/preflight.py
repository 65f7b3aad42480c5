"""Check and start a fine-tune: the one path ``canvas finetune`` and the console take. Torch-free.

:func:`preflight` is every check a fine-tune can pass without loading a model; :func:`start` runs
it, then creates the run directory, then launches the detached engine, so a refused fine-tune leaves
nothing behind. The engine runs the same checks again before it loads the base.

What it catches: a device this machine does not have (or a compute dtype its torch build cannot
do), a base that is not a model (or an unreachable Hub id), conversational data with
missing fields or a chat ending on a user turn (local and embedded data are read whole: they
are small next to a model), and LoRA target modules the base does not have (from the weight
file headers). It also pins the base: "the newest run" or a relative path becomes the exact run
id or absolute folder, so the engine fine-tunes what was checked even if the store changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from engine.config.errors import ConfigError
from engine.config.finetune import FinetuneConfig
from engine.data.sources import offline_by_env
from engine.finetune.base import HF_CONFIG, OUR_CONFIG, BaseModel, lora_targets, resolve_base, weight_shapes
from engine.finetune.chat_data.load import load_conversations
from engine.finetune.chat_data.sources import check_chat_spec
from engine.finetune.chat_data.spec import parse_chat_spec
from engine.preflight import Started, check_device
from engine.runs.meta import RunKind


@dataclass(frozen=True)
class Preflight:
    config: FinetuneConfig  # with the base pinned
    base: BaseModel
    targets: list[str] | str
    conversations: int | None  # None: Hub data, counted when the engine loads it
    warnings: tuple[str, ...] = ()
    kind: RunKind = RunKind.FINETUNE

    def summary(self) -> str:
        targets = self.targets if isinstance(self.targets, str) else ", ".join(self.targets)
        data = (
            f"{self.conversations:,} conversations"
            if self.conversations is not None
            else "Hub data (loaded by the engine)"
        )
        cfg = self.config
        return (
            f"base {self.base.describe()}; data {cfg.data}: {data}; LoRA r={cfg.lora_r} on {targets}; "
            f"{cfg.quantization} quantisation"
        )


def pinned_base(base: BaseModel) -> str:
    if base.run is not None:
        return base.run
    return str(base.path) if base.path is not None else base.name


def preflight(cfg: FinetuneConfig, *, read_data: bool = True, read_hub_cache: bool = True) -> Preflight:
    """Check ``cfg`` against this machine, the base and the data; a :class:`ConfigError` names what
    is wrong and the fix.

    ``read_data``: read local and embedded conversations whole (they are small next to a model).
    ``read_hub_cache``: with ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` set, Hub data can only
    come from the local cache, so read it now (this imports ``datasets``, never torch) and refuse a
    cache miss before a run exists. Every front end keeps both on, so they refuse the same input.
    """
    cfg.validate()
    cfg = cfg.check_sample_prompts()  # the prompts file, its path made absolute for the engine
    check_device(cfg.device, "compute_dtype", cfg.compute_dtype)
    spec = parse_chat_spec(cfg.data)
    check_chat_spec(spec)
    base = resolve_base(cfg.base, cfg.base_checkpoint)
    check_seq_len(cfg.seq_len, base)
    shapes = weight_shapes(base.path) if base.path is not None else None
    targets = lora_targets(cfg.target_modules(), shapes)
    count = None
    if read_data and (spec.kind != "hf" or (read_hub_cache and offline_by_env())):
        count = len(load_conversations(spec))
    pinned = replace(
        cfg,
        base=pinned_base(base),
        base_checkpoint=base.path.name if base.run and base.path else cfg.base_checkpoint,
    )
    return Preflight(pinned, base, targets, count)


def start(cfg: FinetuneConfig, name: str | None = None, *, env: Mapping[str, str] | None = None) -> Started:
    """Preflight ``cfg``, then create the run directory (the base pinned to what was checked) and
    launch its engine detached; returns at once with the run and what was checked.

    Raises :class:`ConfigError` (bad input: nothing was created) or
    :class:`~engine.runs.store.RunStoreError` (the run store or the engine's start failed).
    """
    from engine.finetune import launch

    checked = preflight(cfg)
    return Started(launch.start_finetune_run(checked.config, name, env=env), checked)


def base_context(base: BaseModel) -> int | None:
    """The longest sequence the base was built for, from its config (None when it does not say or
    is not on this machine yet): ``max_position_embeddings`` of a transformers config, or
    ``max_seq_len`` of our own weights folder."""
    import json

    if base.path is None:
        return None
    for name, key in ((HF_CONFIG, "max_position_embeddings"), (OUR_CONFIG, "max_seq_len")):
        try:
            value = json.loads((base.path / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_seq_len(seq_len: int, base: BaseModel) -> None:
    """Refuse a ``seq_len`` longer than the base's context: its positions past the context were
    never trained (and our models have no rotary table for them)."""
    context = base_context(base)
    if context is not None and seq_len > context:
        raise ConfigError(
            "seq_len",
            f"seq_len = {seq_len} is longer than the base's context of {context} tokens "
            f"({base.describe()}): positions past it were never trained. Fix: use --set seq_len={context} "
            "or less.",
        )
