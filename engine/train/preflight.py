"""Check and start a pre-training run: the one path ``canvas train``, the console and the demo take.

:func:`preflight` checks everything that can be checked without preparing data or importing torch:
the config (:meth:`TrainConfig.validate`), the data spec (its syntax, and that every local file
exists, is readable and is not empty), the device and precision against this machine's torch build
and GPUs, and the number of processes against the devices they would run on. :func:`start` runs it,
then creates the run directory, then launches the detached engine, so a refused run leaves nothing
behind; :func:`create` is the same without the launch, for a caller that trains in its own process.
A resume's own check, before the engine prepares data, is :func:`engine.preflight.check_resume`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.config.errors import ConfigError
from engine.config.train import TrainConfig
from engine.data.progress import ProgressCallback
from engine.preflight import Started, check_device, check_nproc, visible_gpus
from engine.runs.meta import RunKind
from engine.train.launch import Nodes


@dataclass(frozen=True)
class Preflight:
    """A pre-training config that passed every check, and what to show before it starts."""

    config: TrainConfig
    nproc: int = 1
    warnings: tuple[str, ...] = ()
    kind: RunKind = RunKind.PRETRAIN

    def summary(self) -> str:
        cfg = self.config
        per_step = cfg.micro_batch * cfg.seq_len * cfg.accumulation(self.nproc) * self.nproc
        if cfg.max_steps:
            length = f"{cfg.max_steps:,} steps"
        elif cfg.max_tokens:
            length = f"{cfg.max_tokens:,} tokens"
        else:
            length = f"{cfg.epochs:g} epoch{'' if cfg.epochs == 1 else 's'}"
        where = cfg.device + (f" x {self.nproc} processes ({cfg.distributed})" if self.nproc > 1 else "")
        return (
            f"preset {cfg.preset}: {cfg.model.num_params():,} parameters; data {cfg.data}; {length} of "
            f"{per_step:,} tokens; precision {cfg.precision} on {where}"
        )


def check_config(cfg: TrainConfig) -> TrainConfig:
    """The config's own checks, and the sizes a step cannot do without. Pure and cheap: the console's
    form runs it on every keystroke, so these errors show before Launch is pressed.

    :meth:`TrainConfig.validate` lets ``micro_batch`` and ``seq_len`` be 0 ("automatic"), but nothing
    resolves a 0 after the preset is applied: it would reach the engine as a step of no sequences.
    """
    cfg.validate()
    from engine.config.loop import check_micro_batch
    from engine.config.presets import get_preset

    check_micro_batch(cfg.micro_batch, cfg.seq_len, get_preset(cfg.preset).micro_batch)
    for name, example in (("micro_batch", 8), ("seq_len", 256)):
        value = getattr(cfg, name)
        if value < 1:
            raise ConfigError(
                name,
                f"{name} = {value!r}: a training step needs at least 1. Fix: use {name}={example} "
                f"(or leave {name} out to keep the preset's).",
            )
    return cfg


def check_data(cfg: TrainConfig, progress: ProgressCallback | None = None) -> None:
    """The data spec's syntax, and every local file is read through :func:`engine.data.check.check_data`
    (the check ``canvas data check`` and the engine's preparation run): a line that is not JSON, a
    missing column, a binary file are refused here, before a run exists."""
    from engine.data.check import check_data as read_and_check
    from engine.data.progress import ignore_progress
    from engine.data.spec import parse_spec, validate_spec

    spec = validate_spec(parse_spec(cfg.data, field_name="data"), check_paths=True, field_name="data")
    read_and_check(spec, progress=progress or ignore_progress, field_name="data")


def preflight(cfg: TrainConfig, *, nproc: int = 1, progress: ProgressCallback | None = None) -> Preflight:
    """Check ``cfg`` for a run of ``nproc`` processes; a :class:`ConfigError` names the field and the fix.

    Cheap checks first (the config, the device string, the process count), then those that read the
    disk (data files, the torch build, NVML).
    """
    check_config(cfg)
    cfg = cfg.check_sample_prompts()  # the prompts file, its path made absolute for the engine
    check_nproc(nproc, cfg.device)
    check_device(cfg.device, "precision", cfg.precision)
    check_data(cfg, progress)
    warnings: list[str] = []
    if nproc > 1 and cfg.device in ("auto", "cpu") and not _has_gpu():
        warnings.append(
            f"{nproc} processes on the CPU (gloo): useful to test distributed training, slower than one."
        )
    return Preflight(cfg, nproc, tuple(warnings))


def _has_gpu() -> bool:
    return bool(visible_gpus()[0])


def create(cfg: TrainConfig, name: str | None = None, *, nproc: int = 1) -> Started:
    """Preflight ``cfg``, then create the run directory without launching an engine: for a caller that
    trains in its own process (the demo). Nothing is created when a check refuses."""
    from engine.train import launch

    checked = preflight(cfg, nproc=nproc)
    return Started(launch.create_training_run(checked.config, name, nproc), checked)


def start(
    cfg: TrainConfig,
    name: str | None = None,
    *,
    nproc: int = 1,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    nodes: Nodes | None = None,
) -> Started:
    """Preflight ``cfg``, then create the run directory and launch its engine detached; returns at once
    with the run and what was checked. ``nodes``: node 0 of a multi-node run (engine.train.launch).

    Raises :class:`ConfigError` (bad input: nothing was created) or
    :class:`~engine.runs.store.RunStoreError` (the run store or the engine's start failed).
    """
    from engine.train import launch

    checked = preflight(cfg, nproc=nproc, progress=progress)
    more = {"nodes": nodes} if nodes is not None else {}  # multi-node: engine.train.launch.Nodes
    return Started(launch.start_training_run(checked.config, name, nproc=nproc, env=env, **more), checked)
