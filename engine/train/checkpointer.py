"""The run's checkpoint folder as the loop sees it: write one (whole, then point ``last`` at it),
mark the best, keep ``keep_checkpoints``, find the one to resume from."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

from engine.train.checkpoint import CheckpointDamaged, prune_checkpoints, set_pointer, write_checkpoint
from engine.train.layout import checkpoint_damage, checkpoint_name, intact_checkpoint
from engine.train.recorder import RunRecorder

T = TypeVar("T")


def step_of(path: Path) -> int | str:
    match = re.search(r"(\d+)$", path.name)
    return int(match.group(1)) if match else "?"


class TrainingStopped(Exception):
    """The run cannot go on; the message says why and what to change."""


class Checkpointer:
    def __init__(self, directory: Path, keep: int, recorder: RunRecorder) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self.recorder = recorder

    def last(self, passed: Collection[Path] = ()) -> Path:
        """The checkpoint a resume starts from: the last one if intact, else the newest intact
        one (each damaged one passed over is logged, naming its bad file); refused clearly when
        there is none. ``passed``: checkpoints found unreadable while loading (see :meth:`load`)."""
        path, damaged = intact_checkpoint(self.directory, passed)
        for bad, problem in damaged:
            self.recorder.log(f"checkpoint {bad.name} is damaged: {problem}; skipping it", level="warning")
        if path is None:
            if damaged or passed:
                raise TrainingStopped(
                    f"cannot resume: every checkpoint in {self.directory} is damaged (see above). "
                    "Fix: start a new run."
                )
            raise TrainingStopped(
                f"cannot resume: {self.directory} holds no checkpoint. Fix: start "
                "a new run (the run stopped before its first checkpoint)."
            )
        if damaged or passed:
            self.recorder.log(
                f"resuming from the newest intact checkpoint {path.name} instead (step {step_of(path)})",
                level="warning",
            )
        return path

    def load(self, read: Callable[[Path], T]) -> tuple[Path, T]:
        """``read`` the checkpoint :meth:`last` picks; when one of its files cannot be read back
        (:class:`CheckpointDamaged`: a checkpoint from before manifests existed has no checksums to
        catch it earlier), log the file and fall back to the previous intact checkpoint."""
        passed: list[Path] = []
        while True:
            path = self.last(passed)
            try:
                return path, read(path)
            except CheckpointDamaged as exc:
                self.recorder.log(f"checkpoint {path.name} is damaged: {exc}; skipping it", level="warning")
                passed.append(path)

    def save(self, step: int, reason: str, write: Callable[[Path], None]) -> Path:
        """The checkpoint of ``step`` (``write`` fills a temporary folder); an existing one is
        only pointed at again."""
        path = self.directory / checkpoint_name(step)
        if not path.is_dir() or checkpoint_damage(path) is not None:  # a damaged one is rewritten
            path = write_checkpoint(self.directory, step, write)
            self.recorder.emit("checkpoint", step=step, path=f"checkpoints/{path.name}", kind="last")
            self.recorder.log(f"checkpoint {path.name} ({reason})")
        else:
            set_pointer(self.directory, "last", path, step)
        for removed in prune_checkpoints(self.directory, self.keep):
            self.recorder.log(f"removed old checkpoint {removed.name} (keep_checkpoints={self.keep})")
        return path

    def mark_best(self, path: Path, step: int, val_loss: float) -> None:
        set_pointer(self.directory, "best", path, step, val_loss)
        self.recorder.emit(
            "checkpoint", step=step, path=f"checkpoints/{path.name}", kind="best", val_loss=val_loss
        )
