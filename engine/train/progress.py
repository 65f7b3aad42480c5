"""Where a run is (step, tokens, best validation loss, guard-rail counters), and the checkpoint
state that makes a resumed step exactly the step an uninterrupted run would have taken."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from engine.train.checkpoint import TrainerState, rng_state, set_rng_state
from engine.train.optim import CosineSchedule
from engine.train.update import OptimizerUpdate, StepResult


class ResumableLoader(Protocol):
    """What the loop needs of a training data loader: its position, saved and restored."""

    epoch: int
    step: int
    batches_per_epoch: int

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Progress:
    """The counters a fresh run starts from; a resume restores them from its checkpoint."""

    step: int = 0
    tokens: int = 0
    best_val: float = math.inf
    nonfinite_streak: int = 0
    skipped: int = 0
    resumed_from: int | None = None

    def record(self, result: StepResult) -> None:
        """Count one step; a refused (non-finite) update extends the streak."""
        self.step += 1
        self.tokens += result.tokens
        if result.applied:
            self.nonfinite_streak = 0
        else:
            self.nonfinite_streak += 1
            self.skipped += 1

    @classmethod
    def resume(cls, state: TrainerState, update: OptimizerUpdate, loader: ResumableLoader) -> Progress:
        """Everything but the weights and optimizer back as it was at the checkpoint."""
        update.scaler.load_state_dict(state.scaler)
        loader.load_state_dict(state.loader)
        set_rng_state(state.rng)
        return cls(
            state.step, state.tokens, state.best_val, state.nonfinite_streak, state.skipped_steps, state.step
        )

    def state(
        self,
        optimizer_state: dict[str, Any],
        update: OptimizerUpdate,
        schedule: CosineSchedule,
        loader: ResumableLoader,
    ) -> TrainerState:
        """What a checkpoint needs besides the weights for the next step to be exactly the same."""
        return TrainerState(
            step=self.step,
            tokens=self.tokens,
            optimizer=optimizer_state,
            scaler=update.scaler.state_dict(),
            schedule=schedule.state_dict(),
            loader=loader.state_dict(),
            rng=rng_state(),
            best_val=self.best_val,
            nonfinite_streak=self.nonfinite_streak,
            skipped_steps=self.skipped,
        )
