"""What the pre-training and the fine-tuning trainers share around :class:`TrainingLoop`: the
run's recorder and checkpointer, the device and precision they start with, the guarded run, and
the loop assembled from a kind's :class:`LoopParts`.

A kind (:class:`engine.train.trainer.Trainer`, :class:`engine.finetune.trainer.FinetuneTrainer`)
builds its own components in :meth:`LoopTrainer.setup` and ends it with :meth:`LoopTrainer.assemble`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from engine.runs.session import EngineSession
from engine.train.checkpointer import Checkpointer
from engine.train.loop import DistInfo, LoopParts, RunControl, TrainingLoop, pick_device, run_guarded
from engine.train.precision import enable_fast_matmul
from engine.train.progress import Progress
from engine.train.recorder import Observer, RunRecorder, telemetry


class LoopTrainer:
    """The shared half of a trainer; ``cfg`` is the kind's validated config."""

    def __init__(
        self,
        cfg: Any,
        run_dir: Path,
        session: EngineSession | None,
        *,
        resume: bool = False,
        dist_info: DistInfo | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.session = session
        self.resume = resume
        self.dist = dist_info or DistInfo()
        self.recorder = RunRecorder(session, observer)
        self.checkpoints = self.run_dir / "checkpoints"
        self.checkpointer = Checkpointer(self.checkpoints, cfg.keep_checkpoints, self.recorder)
        self.device: torch.device | None = None
        self.loop: TrainingLoop | None = None

    # ------------------------------------------------------------------------------ progress
    @property
    def step(self) -> int:
        return self.loop.progress.step if self.loop else 0

    @property
    def best_val(self) -> float:
        return self.loop.progress.best_val if self.loop else math.inf

    def run(self) -> None:
        with telemetry(self.cfg, self.session, self.run_dir, pick_device(self.cfg.device, self.dist)):
            run_guarded(
                self.cfg,
                self.recorder,
                setup=self.setup,
                before_first_step=self.before_first_step,
                oom_advice=self.oom_advice,
                device=lambda: self.device,
            )

    # ------------------------------------------------------------------------------ the kind's part
    def setup(self) -> TrainingLoop:
        """Build every component (in the order exact resume depends on) and the loop over them."""
        raise NotImplementedError

    def before_first_step(self) -> None:
        """Runs once the loop is built, before its first step (nothing by default)."""

    def oom_advice(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------------------ shared steps
    def start_device(self) -> torch.device:
        """Pick the run's device (``self.device``) and make it current."""
        self.device = device = pick_device(self.cfg.device, self.dist)
        if device.type == "cuda":
            torch.cuda.set_device(device)
            enable_fast_matmul()
        return device

    def assemble(self, parts: LoopParts, progress: Progress) -> TrainingLoop:
        """The loop over ``parts``, starting from ``progress`` (``self.loop``)."""
        assert self.device is not None, "start_device() first"
        self.loop = TrainingLoop(
            self.cfg,
            parts,
            progress,
            recorder=self.recorder,
            checkpointer=self.checkpointer,
            control=RunControl(self.session, self.dist, self.device),
            dist_info=self.dist,
        )
        return self.loop
