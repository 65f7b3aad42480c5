"""The one place the console starts a run (called from a thread worker).

Each function is the engine's check-and-start for its run kind (:func:`engine.train.preflight.start`,
:func:`engine.finetune.preflight.start`), the same that ``canvas train`` and ``canvas finetune`` call:
every check runs before the run directory exists, and a :class:`ConfigError` names the field and the
fix in the same words on every front end. Both are torch-free, and imported here only when a run is
launched so the console's start-up never pays for them.
"""

from __future__ import annotations

from engine.config.finetune import FinetuneConfig
from engine.config.train import TrainConfig
from engine.runs.store import RunDir


def launch_pretraining(cfg: TrainConfig, name: str | None = None, *, nproc: int = 1) -> RunDir:
    """Preflight ``cfg`` (config, data files, device, processes) and start the run, as ``canvas train``
    does."""
    from engine.train import preflight

    return preflight.start(cfg, name, nproc=nproc).run


def launch_finetune(cfg: FinetuneConfig, name: str | None = None) -> RunDir:
    """Preflight ``cfg`` (device, base, data, LoRA targets, the Hub cache when offline) and start the
    fine-tune with the base pinned to what was checked, as ``canvas finetune`` does."""
    from engine.finetune import preflight

    return preflight.start(cfg, name).run
