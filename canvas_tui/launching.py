"""The one place the console starts a run (called from a thread worker).

:func:`engine.train.launch.start_training_run` and :func:`engine.finetune.launch.start_finetune_run`
create the run directory with the whole config and launch the detached engine; both are torch-free,
and imported here only when a run is launched so the console's start-up never pays for them.
"""

from __future__ import annotations

from engine.config.finetune import FinetuneConfig
from engine.config.train import TrainConfig
from engine.runs.store import RunDir


def launch_pretraining(cfg: TrainConfig, name: str | None = None) -> RunDir:
    from engine.train.launch import start_training_run

    return start_training_run(cfg, name)


def launch_finetune(cfg: FinetuneConfig, name: str | None = None) -> RunDir:
    """Preflight ``cfg`` (base, data, LoRA targets; reads local data) and start the fine-tune with the
    base pinned to what was checked, as ``canvas finetune`` does. A :class:`ConfigError` names the field."""
    from engine.finetune import launch
    from engine.finetune.preflight import preflight

    checked = preflight(cfg, read_data=True)
    return launch.start_finetune_run(checked.config, name)
