"""What ``--base`` names, found and checked before anything heavy loads. Torch-free.

A base is a ``transformers`` model folder, a Hub id (or a short :data:`BASE_PRESETS` name), one of
our pre-training runs (its best checkpoint is exported to the Hugging Face format on the fly), or
our weights folder (a checkpoint directory). Every check here reads only small files: the
model's ``config.json`` and the safetensors headers, which list every weight's name and shape
without reading a byte of the weights. That is enough to know whether the LoRA target modules
exist and which projections "all" means, so a typo in ``lora_target`` costs a second, not the
minutes a 7B model takes to load.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.config.errors import ConfigError
from engine.config.finetune import BASE_PRESETS
from engine.train.layout import checkpoint_damage, list_checkpoints, resolve_checkpoint

HF_CONFIG = "config.json"
OUR_CONFIG = "model_config.json"  # our weights folder (engine.model.weights)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: Leaf names that are never LoRA targets even though their weights are matrices.
_NOT_PROJECTIONS = {"embed_tokens", "wte", "wpe", "lm_head", "embed_out", "word_embeddings"}


@dataclass(frozen=True)
class BaseModel:
    """A resolved base. ``kind``: ``folder`` (a transformers folder, Hub snapshots included),
    ``hub`` (a Hub id that is not cached yet: downloaded at load), or ``ours`` (our weights
    folder, exported to the Hugging Face format before loading; ``run`` names its run)."""

    kind: str
    name: str
    path: Path | None = None
    run: str | None = None

    def describe(self) -> str:
        if self.kind == "ours":
            where = f"run {self.run}, {self.path.name}" if self.run and self.path else str(self.path)
            return f"our model ({where})"
        return self.name if self.kind == "hub" else f"{self.name} ({self.path})"


def is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a folder here."""
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


def resolve_base(spec: str, checkpoint: str = "best", *, field_name: str = "base") -> BaseModel:
    """Find the base a user named; a :class:`ConfigError` that says what was tried otherwise."""
    spec = spec.strip()
    if not spec:
        return _newest_run(checkpoint, field_name)
    hub_id = BASE_PRESETS.get(spec.lower(), spec.removeprefix("hf:"))
    path = Path(spec).expanduser()
    if path.exists() and not spec.startswith("hf:"):
        return _local(path, field_name)
    run = _find_run(spec)
    if run is not None:
        return _from_run(run, checkpoint, field_name)
    if _HUB_ID.match(hub_id):
        return _hub(hub_id, field_name)
    raise ConfigError(
        field_name,
        f"base {spec!r} is not a folder on this machine, not a run in the run "
        "store and not a Hugging Face Hub id (owner/name). Fix: pass a model folder, a run "
        f"id from `canvas runs`, a Hub id such as meta-llama/Llama-2-7b-hf, or one of "
        f"{', '.join(BASE_PRESETS)}.",
    )


# --- the kinds of base ---------------------------------------------------------------------------


def _local(path: Path, field_name: str) -> BaseModel:
    if path.is_file():
        raise ConfigError(
            field_name,
            f"base {path} is a file; a base model is a folder holding "
            f"{HF_CONFIG} and the weights. Fix: pass the folder that contains it.",
        )
    if (path / OUR_CONFIG).is_file() and not (path / HF_CONFIG).is_file():
        return BaseModel("ours", str(path), path.resolve())
    if not (path / HF_CONFIG).is_file():
        found = sorted(p.name for p in path.iterdir())[:12]
        raise ConfigError(
            field_name,
            f"base {path} is not a model folder: it has no {HF_CONFIG} (found: "
            f"{', '.join(found) or 'nothing'}). Fix: pass the folder written by "
            "save_pretrained / `canvas export --hf`, or a Hub id.",
        )
    check_causal_lm(path / HF_CONFIG, field_name)
    if not any((path / name).is_file() for name in _WEIGHT_FILES) and not list(path.glob("*.safetensors")):
        raise ConfigError(
            field_name,
            f"base {path} has a {HF_CONFIG} but no weights (no *.safetensors or "
            "pytorch_model.bin). Fix: copy the weight files there too, or pass a Hub id.",
        )
    return BaseModel("folder", str(path), path.resolve())


def _find_run(ref: str):
    from engine.runs.store import RunStoreError, resolve_run

    try:
        return resolve_run(ref)
    except RunStoreError:
        return None


def _from_run(run, checkpoint: str, field_name: str) -> BaseModel:
    from engine.runs.meta import RunKind

    meta = run.read_meta()
    if meta.kind != RunKind.PRETRAIN:
        raise ConfigError(
            field_name,
            f"run {run.id} is a {meta.kind} run; a base must be a "
            "pre-training run (or a model folder / Hub id). Fix: pass a pretrain run id.",
        )
    found = resolve_checkpoint(run.checkpoints_dir, checkpoint)
    if checkpoint == "best" and found is None:  # a run without validation has no best: use its last
        found = resolve_checkpoint(run.checkpoints_dir, "last")
    if found is None or not (found / OUR_CONFIG).is_file():
        have = [p.name for _, p in list_checkpoints(run.checkpoints_dir)]
        raise ConfigError(
            field_name,
            f"run {run.id} ({meta.name}) has no checkpoint {checkpoint!r} "
            f"to fine-tune (it has {have or 'none yet'}). Fix: let it reach a checkpoint "
            "(`canvas checkpoint RUN` asks for one) or set base_checkpoint.",
        )
    problem = checkpoint_damage(found, quick=True)
    if problem is not None:
        raise ConfigError(
            field_name,
            f"run {run.id} ({meta.name}): its checkpoint {found.name} is damaged ({problem}). Fix: "
            "choose another checkpoint of the run (--set base_checkpoint=last, or a step number), or "
            "another base.",
        )
    return BaseModel("ours", meta.name or run.id, found, run=run.id)


def usable_runs(checkpoint: str = "best") -> Iterator[BaseModel]:
    """The pre-training runs a fine-tune can start from, newest first: each with its checkpoint
    (``checkpoint``, or the last where there is no best), which exists and is intact. A run that
    crashed before its first checkpoint, or whose checkpoint is damaged, is not among them."""
    from engine.runs.meta import RunKind
    from engine.runs.store import RunStoreError, list_runs

    for run in reversed(list_runs()):
        try:
            if run.read_meta().kind == RunKind.PRETRAIN and list_checkpoints(run.checkpoints_dir):
                yield _from_run(run, checkpoint, "base")
        except (OSError, ValueError, ConfigError, RunStoreError):  # unusable or unreadable: the next
            continue


def _newest_run(checkpoint: str, field_name: str) -> BaseModel:
    for base in usable_runs(checkpoint):
        return base
    raise ConfigError(
        field_name,
        "no base model given, and the run store holds no pre-training run with "
        "an intact checkpoint to default to. Fix: pass --base (a model folder, a Hub id such as "
        "meta-llama/Llama-2-7b-hf, or a run id), or pre-train one first: "
        "`canvas train --set max_steps=200`.",
    )


def _hub(hub_id: str, field_name: str) -> BaseModel:
    cached = hub_snapshot(hub_id)
    if cached is not None:
        check_causal_lm(cached / HF_CONFIG, field_name)
        return BaseModel("folder", hub_id, cached)
    from engine.data.sources import hub_host, hub_reachable, offline_by_env

    if offline_by_env() or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline_by_env() else f"this machine cannot reach {hub_host()}"
        raise ConfigError(
            field_name,
            f"base {hub_id!r} is a Hugging Face Hub id, but {why} and the model is "
            "not in the local Hugging Face cache. Fix: download it once on a machine with "
            "network (`hf download " + hub_id + "`) and copy the folder here, "
            "then pass that folder as --base.",
        )
    return BaseModel("hub", hub_id)


def hub_snapshot(hub_id: str) -> Path | None:
    """The cached snapshot folder of a Hub model, if its config is in the local cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    found = try_to_load_from_cache(hub_id, HF_CONFIG)
    return Path(found).parent if isinstance(found, str) else None


def check_causal_lm(config_path: Path, field_name: str = "base") -> dict:
    """The model's ``config.json``, refused when it is not a causal (decoder-only) language model."""
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            field_name,
            f"{config_path} is not readable JSON ({exc}). Fix: re-download or re-export the model.",
        ) from None
    archs = config.get("architectures") or []
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise ConfigError(
            field_name,
            f"{config_path.parent} holds a {config.get('model_type')} model "
            f"({', '.join(archs)}), not a causal language model. Fix: pass a decoder-only "
            "model such as Llama, Mistral or Qwen (its architectures end in ForCausalLM).",
        )
    return config


# --- weight names, without reading weights -------------------------------------------------------


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's name and shape from a ``.safetensors`` header (the first 8 bytes give its size)."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    header.pop("__metadata__", None)
    return {name: info["shape"] for name, info in header.items()}


def weight_shapes(folder: Path) -> dict[str, list[int]] | None:
    """Names and shapes of a model folder's weights, or ``None`` when only pickled weights exist."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, list[int]] = {}
    for path in files:
        shapes.update(safetensors_shapes(path))
    return shapes


def projection_names(shapes: dict[str, list[int]]) -> list[str]:
    """The leaf names of the matrix-weight layers inside the transformer blocks: what LoRA can target."""
    names = set()
    for name, shape in shapes.items():
        parts = name.split(".")
        if len(shape) != 2 or parts[-1] != "weight" or len(parts) < 3:
            continue
        if not any(p.isdigit() for p in parts[:-2]):  # outside the numbered blocks: embeddings, head
            continue
        if parts[-2] not in _NOT_PROJECTIONS:
            names.add(parts[-2])
    return sorted(names)


def lora_targets(
    requested: list[str], shapes: dict[str, list[int]] | None, field_name: str = "lora_target"
) -> list[str] | str:
    """The module names to wrap. ``["all"]`` → every projection; names not in the model → error.

    Without readable shapes (pickled weights) the answer is peft's ``"all-linear"`` or the names
    as given, and peft checks them at load time.
    """
    if shapes is None:
        return "all-linear" if requested == ["all"] else requested
    present = projection_names(shapes)
    if not present:
        raise ConfigError(
            field_name,
            "found no projection layers in the base model's weights to put LoRA "
            "adapters on. Fix: pass lora_target as a comma list of its linear modules.",
        )
    if requested == ["all"]:
        return present
    missing = [n for n in requested if n not in present]
    if missing:
        raise ConfigError(
            field_name,
            f"lora_target names {', '.join(missing)}, which the base model does "
            f"not have; its projection layers are: {', '.join(present)}. Fix: --set "
            f"lora_target={','.join(present)} (or all).",
        )
    return requested
