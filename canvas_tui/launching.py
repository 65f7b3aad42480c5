"""The one place the console starts a pre-training run (called from a thread worker).

:func:`engine.train.launch.start_training_run` creates the run directory with the whole config
and launches the detached engine; it is torch-free, and imported here only when a run is
launched so the console's start-up never pays for it.
"""

from __future__ import annotations

from engine.config.train import TrainConfig
from engine.runs.store import RunDir


def launch_pretraining(cfg: TrainConfig, name: str | None = None) -> RunDir:
    from engine.train.launch import start_training_run

    return start_training_run(cfg, name)
