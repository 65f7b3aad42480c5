"""Where a run keeps its checkpoints, and which one is "best" or "last". Torch-free.

Each checkpoint is a directory ``checkpoints/step-000120/`` written under a temporary name and
renamed whole, so any non-temporary ``step-*`` directory is complete. ``best`` and ``last`` are
pointer files (``best.json``, ``last.json``) replaced atomically; a directory is never renamed
over another, so a ``kill -9`` at any instant leaves every earlier checkpoint usable. Inside a
checkpoint: ``model.safetensors`` + ``model_config.json`` (the weights folder format that
``canvas export`` reads) and ``trainer.pt`` (optimizer, scheduler, scaler, RNG, data position).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^step-(\d+)$")
POINTERS = ("best", "last")


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first, as (step, directory)."""
    out = []
    if Path(checkpoints_dir).is_dir():
        for p in Path(checkpoints_dir).iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and p.is_dir():
                out.append((int(m.group(1)), p))
    return sorted(out)


def read_pointer(checkpoints_dir: Path, which: str) -> dict | None:
    """The ``best`` / ``last`` record (``{"dir", "step", "val_loss"}``) if it points at a real checkpoint."""
    path = Path(checkpoints_dir) / f"{which}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    target = Path(checkpoints_dir) / str(record.get("dir", ""))
    return record if CHECKPOINT_RE.match(target.name) and target.is_dir() else None


def resolve_checkpoint(checkpoints_dir: Path, which: str = "last") -> Path | None:
    """``best``, ``last`` or a step number → checkpoint directory (``last`` falls back to the newest)."""
    checkpoints_dir = Path(checkpoints_dir)
    if which in POINTERS:
        record = read_pointer(checkpoints_dir, which)
        if record is not None:
            return checkpoints_dir / record["dir"]
        if which == "last":
            found = list_checkpoints(checkpoints_dir)
            return found[-1][1] if found else None
        return None
    step = int(which.removeprefix("step-"))
    path = checkpoints_dir / checkpoint_name(step)
    return path if path.is_dir() else None
