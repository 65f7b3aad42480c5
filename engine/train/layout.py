"""Where a run keeps its checkpoints, and which one is "best" or "last". Torch-free.

Each checkpoint is a directory ``checkpoints/step-000120/`` written under a temporary name and
renamed whole, so any non-temporary ``step-*`` directory is complete. ``best`` and ``last`` are
pointer files (``best.json``, ``last.json``) replaced atomically; a directory is never renamed
over another, so a ``kill -9`` at any instant leaves every earlier checkpoint usable. Inside a
checkpoint: ``model.safetensors`` + ``model_config.json`` (the weights folder format that
``canvas export`` reads) and ``trainer.pt`` (optimizer, scheduler, scaler, RNG, data position).

Each checkpoint also holds ``manifest.json``, written last (inside the temporary folder, so it
appears with the rest in one rename): the size and sha256 of every other file. A checkpoint whose
files no longer match (a truncated or corrupted file) is *damaged*: a resume skips it for the
newest intact one. Checkpoints of older runs have no manifest and are taken as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Collection
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^step-(\d+)$")
POINTERS = ("best", "last")
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first, as (step, directory)."""
    out = []
    if Path(checkpoints_dir).is_dir():
        for p in Path(checkpoints_dir).iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and _real_dir(p):
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
    return record if CHECKPOINT_RE.match(target.name) and _real_dir(target) else None


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
    return path if _real_dir(path) else None


def _real_dir(path: Path) -> bool:
    """A directory that is not a symbolic link (the store never follows a link it did not create)."""
    return path.is_dir() and not path.is_symlink()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """Record the size and sha256 of every file in ``directory`` in ``manifest.json`` (synced).

    Called on the temporary folder after its files are written, so the manifest is the last file
    and arrives with the others in the folder's rename."""
    directory = Path(directory)
    files = {
        name: {"bytes": (directory / name).stat().st_size, "sha256": file_sha256(directory / name)}
        for name in sorted(os.listdir(directory))
        if name != MANIFEST_FILE and (directory / name).is_file()
    }
    path = directory / MANIFEST_FILE
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"v": MANIFEST_VERSION, "files": files}, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


#: ``quick`` checks hash only files up to this size (sizes are always compared).
QUICK_HASH_BYTES = 64 * 2**20


def checkpoint_damage(path: Path, quick: bool = False) -> str | None:
    """Why checkpoint ``path`` cannot be trusted (naming the file), or None when it is intact.

    A checkpoint without ``manifest.json`` (written before manifests existed) counts as intact.
    ``quick`` (for ``canvas status``) compares sizes and hashes only files of up to
    :data:`QUICK_HASH_BYTES`; a resume checks everything."""
    path = Path(path)
    try:
        linked = [e.name for e in os.scandir(path) if e.is_symlink()]
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror})"
    if path.is_symlink() or linked:
        return f"{path / linked[0] if linked else path} is a symbolic link, not a file the run wrote"
    manifest = path / MANIFEST_FILE
    if not manifest.exists():  # an older run's: its safetensors files can still be checked whole
        for file in sorted(path.glob("*.safetensors")):
            if (problem := safetensors_damage(file)) is not None:
                return problem
        return None
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        expected = {str(k): (int(v["bytes"]), str(v["sha256"])) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{manifest} is unreadable"
    for name, (size, sha) in expected.items():
        file = path / name
        try:
            actual = file.stat().st_size
        except OSError:
            return f"{file} is missing"
        if actual != size:
            return f"{file} has {actual:,} bytes, {size:,} were written"
        if (not quick or size <= QUICK_HASH_BYTES) and file_sha256(file) != sha:
            return f"{file} does not match the sha256 recorded when it was written"
    return None


def safetensors_damage(file: Path) -> str | None:
    """Why a ``.safetensors`` file is not whole (its header's tensors must end where the file
    does), or None: catches truncation without reading the tensors."""
    try:
        with open(file, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{file} is truncated ({size:,} bytes, shorter than its header says)"
            header = json.loads(fh.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except OSError as exc:
        return f"{file} cannot be read ({exc.strerror})"
    except (ValueError, KeyError, TypeError, IndexError):
        return f"{file} has an unreadable header"
    if size != 8 + n + end:
        return f"{file} has {size:,} bytes, its header says {8 + n + end:,}"
    return None


def intact_checkpoint(
    checkpoints_dir: Path, passed: Collection[Path] = ()
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The checkpoint a resume starts from: ``last`` if intact, else the newest intact one
    (``passed``: checkpoints already found unreadable, and everything newer, are not candidates).

    Returns it (None when there is none) and the damaged checkpoints passed over, with why."""
    checkpoints_dir = Path(checkpoints_dir)
    candidates: list[Path] = []
    last = resolve_checkpoint(checkpoints_dir, "last")
    if last is not None:
        candidates.append(last)
    older = [p for _, p in reversed(list_checkpoints(checkpoints_dir))]
    candidates += [p for p in older if last is None or p.name < last.name]
    if passed:
        oldest_passed = min(p.name for p in passed)
        candidates = [p for p in candidates if p.name < oldest_passed]
    damaged: list[tuple[Path, str]] = []
    for candidate in candidates:
        problem = checkpoint_damage(candidate)
        if problem is None:
            return candidate, damaged
        damaged.append((candidate, problem))
    return None, damaged
