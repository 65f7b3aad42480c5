"""Every check a fine-tune can pass without loading a model: run by ``canvas finetune`` before it
launches anything, and again by the engine before it loads the base. Torch-free.

What it catches: a base that is not a model (or an unreachable Hub id), conversational data with
missing fields or a chat ending on a user turn (local and embedded data are read whole: they
are small next to a model), and LoRA target modules the base does not have (from the weight
file headers). It also pins the base: "the newest run" or a relative path becomes the exact run
id or absolute folder, so the engine fine-tunes what was checked even if the store changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.config.finetune import FinetuneConfig
from engine.data.sources import offline_by_env
from engine.finetune.base import BaseModel, lora_targets, resolve_base, weight_shapes
from engine.finetune.conversations import check_chat_spec, load_conversations, parse_chat_spec


@dataclass(frozen=True)
class Preflight:
    config: FinetuneConfig  # with the base pinned
    base: BaseModel
    targets: list[str] | str
    conversations: int | None  # None: Hub data, counted when the engine loads it

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


def preflight(cfg: FinetuneConfig, *, read_data: bool = True, read_hub_cache: bool = False) -> Preflight:
    """Check ``cfg`` against the base and the data; a :class:`ConfigError` names what is wrong.

    ``read_hub_cache``: with ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` set, Hub data can only
    come from the local cache, so read it now (the CLI does; it imports ``datasets``, which the
    console avoids) and a cache miss is refused before a run exists.
    """
    cfg.validate()
    spec = parse_chat_spec(cfg.data)
    check_chat_spec(spec)
    base = resolve_base(cfg.base, cfg.base_checkpoint)
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
