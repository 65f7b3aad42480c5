"""What a ``load`` request names, found and checked before torch is imported. Torch-free.

``model`` is, in this order: a folder on this machine (a run directory, one of our checkpoint
folders, a ``transformers`` model folder, or a LoRA adapter folder whose config names its base);
one of our runs (id, unique id prefix or name); or a Hugging Face Hub id that is in the local
cache (nothing is downloaded: a chat must not hang on the network). The result says what to load
(:class:`ResolvedModel`); every refusal is a :class:`~engine.serve.protocol.ProtocolError` naming
the field to fix (``model``, ``checkpoint`` or ``adapter``) and how.

The newest checkpoint of a run that is still training is read in place: checkpoints are written
under a temporary name and renamed whole (:mod:`engine.train.layout`), so any ``step-*`` folder
is complete, and reading it takes nothing from the run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.serve.protocol import Generate, ProtocolError
from engine.train.layout import CHECKPOINT_RE, POINTERS, list_checkpoints, resolve_checkpoint

OUR_CONFIG = "model_config.json"
HF_CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ResolvedModel:
    """What to load. ``kind``: ``pretrain`` (our weights: a plain continuation model),
    ``finetune`` (a fine-tune run: its base plus adapter, with its chat template) or ``hf`` (a
    transformers folder or cached Hub model, optionally with ``adapter``)."""

    kind: str
    label: str
    weights: Path | None = None  # pretrain: our weights folder (a checkpoint)
    tokenizer: Path | None = None  # a folder with tokenizer.json (None: the model folder's own)
    source: str | None = None  # hf: the folder from_pretrained reads
    adapter: Path | None = None  # a LoRA adapter folder (finetune: the run's)
    checkpoint: str | None = None  # the checkpoint's name (step-000120) or "adapter"
    run_id: str | None = None
    run_path: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)  # finetune: the run's config
    training: bool = False  # the run is still live


def _error(field_name: str, message: str) -> ProtocolError:
    return ProtocolError(field_name, message)


def check_checkpoint(checkpoint: str | None) -> str | None:
    """``best``, ``last``, a step number or ``step-N``; ProtocolError('checkpoint') otherwise."""
    if checkpoint is None:
        return None
    text = checkpoint.strip()
    if text in POINTERS or text.isdigit() or CHECKPOINT_RE.match(text):
        return text
    raise _error(
        "checkpoint",
        f"checkpoint {checkpoint!r} is not best, last or a step number. Fix: pass "
        "--checkpoint best, last or a step such as 200 (`canvas runs` lists a run's checkpoints).",
    )


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise _error("device", f"device {device!r} is not one of {', '.join(DEVICES)}. Fix: use auto.")
    return device


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise _error("dtype", f"dtype {dtype!r} is not one of {', '.join(DTYPES)}. Fix: use auto.")
    return dtype


def check_sampling(
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    repetition_penalty: float,
) -> None:
    """The sampling values' ranges, with the messages of ``SamplingParams.validate`` (which needs torch)."""
    if max_new_tokens < 1:
        raise _error(
            "max_new_tokens",
            f"max_new_tokens = {max_new_tokens} must be at least 1. Fix: ask for 1 or more new tokens.",
        )
    if temperature < 0:
        raise _error(
            "temperature",
            f"temperature = {temperature} cannot be negative. "
            "Fix: use 0 for greedy decoding or a positive value such as 0.7.",
        )
    if top_k < 0:
        raise _error(
            "top_k",
            f"top_k = {top_k} cannot be negative. Fix: use 0 to "
            "disable top-k, or a positive count such as 50.",
        )
    if not 0 < top_p <= 1:
        raise _error(
            "top_p",
            f"top_p = {top_p} must be in (0, 1]. Fix: use 1.0 to "
            "disable nucleus sampling, or a value such as 0.9.",
        )
    if repetition_penalty <= 0:
        raise _error(
            "repetition_penalty",
            f"repetition_penalty = {repetition_penalty} must be positive. Fix: use 1.0 for none, or 1.1–1.3.",
        )


def check_generate(request: Generate) -> None:
    """Ranges of a generate request (its types were checked by the protocol)."""
    check_sampling(
        max_new_tokens=request.max_new_tokens,
        temperature=request.temperature,
        top_k=request.top_k,
        top_p=request.top_p,
        repetition_penalty=request.repetition_penalty,
    )
    if any(not s for s in request.stop):
        raise _error("stop", "stop strings cannot be empty. Fix: remove the empty string from 'stop'.")


# ------------------------------------------------------------------------------------ resolution
def resolve(model: str, checkpoint: str | None = None, adapter: str | None = None) -> ResolvedModel:
    """Find what ``model`` (+ ``checkpoint``, ``adapter``) names; ProtocolError naming the field."""
    checkpoint = check_checkpoint(checkpoint)
    spec = model.strip()
    if not spec:
        raise _error(
            "model", "no model given. Fix: pass a run id or name (`canvas runs`), a model folder or a Hub id."
        )
    adapter_dir = _adapter_folder(adapter) if adapter else None
    path = Path(spec).expanduser()
    if path.exists():
        return _from_path(path, checkpoint, adapter_dir)
    run = _find_run(spec)
    if run is not None:
        return _from_run(run, checkpoint, adapter_dir)
    if _HUB_ID.match(spec.removeprefix("hf:")):
        return _from_hub(spec.removeprefix("hf:"), checkpoint, adapter_dir)
    raise _error(
        "model",
        f"model {spec!r} is not a folder on this machine, not a run in the run store and not a "
        "Hugging Face Hub id (owner/name). Fix: pass a run id or name from `canvas runs`, a model "
        "folder (one with config.json, or a checkpoint folder), or a cached Hub id.",
    )


def _adapter_folder(adapter: str) -> Path:
    path = Path(adapter).expanduser()
    if not (path / ADAPTER_CONFIG).is_file():
        what = "does not exist" if not path.exists() else f"has no {ADAPTER_CONFIG}"
        raise _error(
            "adapter",
            f"adapter {adapter!r} {what}, so it is not a LoRA adapter folder. Fix: pass the folder "
            "written by `canvas export RUN --adapter OUT` or peft's save_pretrained.",
        )
    return path.resolve()


def _find_run(ref: str):
    from engine.runs.store import RunStoreError, resolve_run

    try:
        return resolve_run(ref)
    except RunStoreError as exc:
        if "several" in str(exc) or "start of" in str(exc) or "runs are named" in str(exc):
            raise _error("model", f"{exc}") from None
        return None


def _is_live(run) -> bool:
    from engine.runs.status import run_status

    try:
        return run_status(run).is_live
    except Exception:  # an unreadable run.json: not known to be live
        return False


def _from_path(path: Path, checkpoint: str | None, adapter: Path | None) -> ResolvedModel:
    if path.is_file():
        raise _error(
            "model",
            f"{path} is a file; a model is a folder (or a run). Fix: pass the folder that holds it.",
        )
    if (path / "run.json").is_file():
        from engine.runs.store import RunDir

        return _from_run(RunDir(path.resolve()), checkpoint, adapter)
    if (path / OUR_CONFIG).is_file() and not (path / HF_CONFIG).is_file():
        if adapter is not None:
            raise _error(
                "adapter", f"{path} is one of our checkpoints; an adapter goes on a transformers model."
            )
        tokenizer = next(
            (f for f in (path, path.parent.parent / "tokenizer") if (f / TOKENIZER_FILE).is_file()), None
        )
        if tokenizer is None:
            raise _error(
                "model",
                f"{path} holds weights but no tokenizer (nor does its run's tokenizer/ folder). Fix: "
                "load the run by its id, or copy the tokenizer files into the folder.",
            )
        return ResolvedModel(
            "pretrain", str(path), weights=path.resolve(), tokenizer=tokenizer, checkpoint=path.name
        )
    if (path / HF_CONFIG).is_file():
        _check_hf_config(path)
        return ResolvedModel("hf", str(path), source=str(path.resolve()), adapter=adapter)
    if (path / ADAPTER_CONFIG).is_file():
        if adapter is not None:
            raise _error("adapter", f"{path} is itself an adapter folder; give one adapter, not two.")
        base = _adapter_base(path)
        resolved = resolve(base)
        if resolved.kind != "hf":
            resolved = ResolvedModel("hf", base, source=resolved.source or base)
        resolved.adapter = path.resolve()
        resolved.label = str(path)
        return resolved
    found = sorted(p.name for p in path.iterdir())[:10]
    raise _error(
        "model",
        f"{path} is not a model folder: it has no {HF_CONFIG}, {OUR_CONFIG} or {ADAPTER_CONFIG} (found: "
        f"{', '.join(found) or 'nothing'}). Fix: pass a run id, a checkpoint folder, or a folder "
        "written by save_pretrained / `canvas export`.",
    )


def _adapter_base(path: Path) -> str:
    try:
        base = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        raise _error("model", f"cannot read {path / ADAPTER_CONFIG}: {exc}") from None
    if not base:
        raise _error(
            "model",
            f"adapter {path} does not name its base (base_model_name_or_path). Fix: load the base as "
            "the model and pass this folder as the adapter.",
        )
    return str(base)


def _check_hf_config(path: Path) -> dict:
    try:
        config = json.loads((path / HF_CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise _error("model", f"cannot read {path / HF_CONFIG}: {exc}. Fix: re-export the model.") from None
    if not isinstance(config, dict):
        raise _error("model", f"{path / HF_CONFIG} is not a JSON object. Fix: re-export the model.")
    return config


def _from_hub(hub_id: str, checkpoint: str | None, adapter: Path | None) -> ResolvedModel:
    cached = hub_snapshot(hub_id)
    if cached is None:
        raise _error(
            "model",
            f"model {hub_id!r} looks like a Hugging Face Hub id, but it is not in the local Hugging Face "
            "cache, and the inference worker does not download (HF_HUB_OFFLINE behaviour). Fix: "
            f"`hf download {hub_id}` once on a machine with network, or pass a model folder.",
        )
    _check_hf_config(cached)
    return ResolvedModel("hf", hub_id, source=str(cached), adapter=adapter)


def hub_snapshot(hub_id: str) -> Path | None:
    """The cached snapshot folder of a Hub model, if its config is in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    found = try_to_load_from_cache(hub_id, HF_CONFIG)
    return Path(found).parent if isinstance(found, str) else None


def _from_run(run, checkpoint: str | None, adapter: Path | None) -> ResolvedModel:
    from engine.runs.meta import RunKind
    from engine.runs.store import RunStoreError

    try:
        meta = run.read_meta()
    except RunStoreError as exc:
        raise _error("model", str(exc)) from None
    if adapter is not None:
        raise _error(
            "adapter",
            f"run {run.id} is one of our runs; an adapter folder goes on a transformers model folder or "
            "Hub id (a fine-tune run brings its own adapter). Fix: drop the adapter.",
        )
    label = meta.name or run.id
    live = _is_live(run)
    if meta.kind == RunKind.PRETRAIN:
        found = _pretrain_checkpoint(run, checkpoint, label)
        tokenizer = run.path / "tokenizer"
        if not (tokenizer / TOKENIZER_FILE).is_file():
            raise _error(
                "model",
                f"run {run.id} ({label}) has no tokenizer in {tokenizer}. Fix: load a checkpoint folder "
                "with its tokenizer files, or re-run the data preparation.",
            )
        return ResolvedModel(
            "pretrain",
            label,
            weights=found,
            tokenizer=tokenizer,
            checkpoint=found.name,
            run_id=run.id,
            run_path=run.path,
            training=live,
        )
    if meta.kind == RunKind.FINETUNE:
        adapter_dir, name = _finetune_adapter(run, meta, checkpoint, label)
        return ResolvedModel(
            "finetune",
            label,
            adapter=adapter_dir,
            checkpoint=name,
            run_id=run.id,
            run_path=run.path,
            config=dict(meta.config),
            training=live,
        )
    kind = str(meta.kind)
    article = "an" if kind[:1].lower() in "aeiou" else "a"  # "an eval run", "a serve run"
    raise _error(
        "model",
        f"run {run.id} ({label}) is {article} {kind} run, which holds no model to talk to. Fix: pass a "
        "pre-training or fine-tune run (`canvas runs` lists them).",
    )


def _available(run) -> str:
    have = [p.name for _, p in list_checkpoints(run.checkpoints_dir)]
    return ", ".join(have) if have else "none yet"


def _pretrain_checkpoint(run, checkpoint: str | None, label: str) -> Path:
    ckpts = run.checkpoints_dir
    found = resolve_checkpoint(ckpts, checkpoint or "best")
    if checkpoint is None and found is None:  # default: best, else the newest
        newest = list_checkpoints(ckpts)
        found = newest[-1][1] if newest else None
    if found is None or not (found / OUR_CONFIG).is_file():
        if checkpoint is None:
            raise _error(
                "checkpoint",
                f"run {run.id} ({label}) has no checkpoint yet. Fix: wait for its first checkpoint, or "
                f"ask for one now with `canvas checkpoint {run.id}`.",
            )
        raise _error(
            "checkpoint",
            f"run {run.id} ({label}) has no checkpoint {checkpoint!r}; it has {_available(run)}. "
            "Fix: pick one with --checkpoint best, last or a step number.",
        )
    return found


def _has_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()


def _finetune_adapter(run, meta, checkpoint: str | None, label: str) -> tuple[Path, str]:
    if checkpoint is None:
        if meta.adapter and _has_adapter(run.path / meta.adapter):
            return run.path / meta.adapter, meta.adapter_from or "adapter"
        newest = [p for _, p in list_checkpoints(run.checkpoints_dir) if _has_adapter(p)]
        if newest:
            return newest[-1], newest[-1].name
        raise _error(
            "checkpoint",
            f"fine-tune {run.id} ({label}) has no adapter yet (no finished adapter and no checkpoint). "
            f"Fix: wait for its first checkpoint, or ask for one now with `canvas checkpoint {run.id}`.",
        )
    found = resolve_checkpoint(run.checkpoints_dir, checkpoint)
    if found is None or not _has_adapter(found):
        raise _error(
            "checkpoint",
            f"fine-tune {run.id} ({label}) has no checkpoint {checkpoint!r} with an adapter; it has "
            f"{_available(run)}. Fix: pick one with --checkpoint best, last or a step number, or leave "
            "it out for the finished adapter.",
        )
    return found, found.name
