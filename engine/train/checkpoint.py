"""Writing and reading training checkpoints that resume bit-exactly.

See :mod:`engine.train.layout` for the directory layout and why nothing is ever half-written.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from engine.model.llama import CausalLM
from engine.model.weights import MODEL_CONFIG_FILE, WEIGHTS_FILE, export_state_dict
from engine.runs.store import atomic_path, write_json_atomic
from engine.train.layout import checkpoint_name, list_checkpoints, read_pointer, write_manifest

TRAINER_FILE = "trainer.pt"


class CheckpointDamaged(Exception):
    """A checkpoint file that cannot be read back; the message names the file. A resume passes over
    such a checkpoint to the next intact one (a checkpoint written before manifests existed has no
    checksums, so reading it is how its damage shows)."""


def read_file(file: Path, read: Callable[[], Any]) -> Any:
    """``read()``, with any failure to read ``file`` turned into :class:`CheckpointDamaged`."""
    try:
        return read()
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointDamaged(f"{file} cannot be read ({why})") from exc


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainerState:
    """Everything besides the weights that the next step depends on."""

    step: int
    tokens: int
    optimizer: dict
    scaler: dict
    schedule: dict
    loader: dict
    rng: dict
    best_val: float
    nonfinite_streak: int
    skipped_steps: int


def write_checkpoint(checkpoints_dir: Path, step: int, write_files: Callable[[Path], None]) -> Path:
    """Create ``step-N/`` whole: ``write_files`` fills a temporary directory, every file is synced,
    ``manifest.json`` records their checksums, then the directory is renamed into place and
    ``last`` points at it."""
    final = Path(checkpoints_dir) / checkpoint_name(step)
    with atomic_path(final) as tmp:
        tmp.mkdir(mode=0o700)
        write_files(tmp)
        for name in os.listdir(tmp):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        write_manifest(tmp)
    set_pointer(checkpoints_dir, "last", final, step)
    return final


def write_model_files(
    directory: Path, model: CausalLM, state: TrainerState, weights: dict[str, torch.Tensor] | None = None
) -> None:
    """A pre-training checkpoint's files: the weights folder format plus ``trainer.pt``.

    ``weights`` is the full (unsharded) state dict when the model is sharded across ranks.
    """
    if weights is None:
        tensors = export_state_dict(model)
    else:
        tied = model.config.tie_embeddings
        tensors = {
            k: v.detach().cpu().contiguous()
            for k, v in weights.items()
            if not (tied and k == "lm_head.weight")
        }
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    (directory / MODEL_CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    torch.save(state.__dict__, directory / TRAINER_FILE)


def save_checkpoint(
    checkpoints_dir: Path,
    model: CausalLM,
    state: TrainerState,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a pre-training checkpoint ``step-N/`` whole and point ``last`` at it."""
    return write_checkpoint(
        checkpoints_dir, state.step, lambda tmp: write_model_files(tmp, model, state, weights)
    )


def load_trainer_state(path: Path) -> TrainerState:
    """``trainer.pt``, read with ``weights_only=True`` (no pickled code runs)."""
    file = Path(path) / TRAINER_FILE
    raw = read_file(file, lambda: torch.load(file, map_location="cpu", weights_only=True))
    return read_file(file, lambda: TrainerState(**raw))


def set_pointer(
    checkpoints_dir: Path, which: str, target: Path, step: int, val_loss: float | None = None
) -> None:
    write_json_atomic(
        Path(checkpoints_dir) / f"{which}.json", {"dir": target.name, "step": step, "val_loss": val_loss}
    )


def prune_checkpoints(checkpoints_dir: Path, keep: int) -> list[Path]:
    """Keep the ``keep`` newest step checkpoints, and never the ones ``best``/``last`` point to."""
    pinned = {r["dir"] for w in ("best", "last") if (r := read_pointer(checkpoints_dir, w))}
    found = list_checkpoints(checkpoints_dir)
    removed = []
    for _, path in found[: max(0, len(found) - keep)]:
        if path.name not in pinned:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def load_checkpoint(path: Path, model: CausalLM) -> tuple[dict[str, torch.Tensor], TrainerState]:
    """The full weights (CPU) and the trainer state, read with ``weights_only=True``."""
    file = Path(path) / WEIGHTS_FILE
    weights = read_file(file, lambda: load_file(str(file)))
    if model.config.tie_embeddings:
        weights.setdefault("lm_head.weight", weights["model.embed_tokens.weight"])
    return weights, load_trainer_state(path)
