"""Creating a pre-training run directory and launching its engine detached. Torch-free.

Front ends do not call this directly: :func:`engine.train.preflight.start` checks the config first
(so bad input never leaves a run directory behind) and then calls :func:`start_training_run`. The
run's whole config is stored in ``run.json`` before the engine starts, so the engine, a later
``canvas resume`` and a person reading the run directory all see the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.config.train import TrainConfig
from engine.runs import create_run, launch_detached
from engine.runs.meta import RunKind
from engine.runs.process import python_argv
from engine.runs.store import RunDir

WORKER = "engine.train.worker"


def worker_argv(run_dir: str, resume: bool = False, nproc: int = 1) -> list[str]:
    """The engine command line; with ``nproc > 1`` it runs under ``torchrun`` (DDP)."""
    args = ["--run-dir", run_dir, *(["--resume"] if resume else [])]
    if nproc > 1:
        return python_argv(
            "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", WORKER, *args
        )
    return python_argv(WORKER, *args)


def create_training_run(cfg: TrainConfig, name: str | None = None, nproc: int = 1) -> RunDir:
    """The run directory with the whole config and the resume command (no checks beyond the config's)."""
    cfg.validate()
    return create_run(
        RunKind.PRETRAIN,
        name,
        cfg.to_dict(),
        resume_argv=worker_argv("{run_dir}", resume=True, nproc=nproc),
        extra={"nproc": nproc},
    )


def start_training_run(
    cfg: TrainConfig, name: str | None = None, *, nproc: int = 1, env: Mapping[str, str] | None = None
) -> RunDir:
    """Create the run directory and launch its engine detached; returns at once.

    ``cfg`` must have passed :func:`engine.train.preflight.preflight`; use
    :func:`engine.train.preflight.start`, which does both."""
    run = create_training_run(cfg, name, nproc)
    launch_detached(run, worker_argv(str(run.path), nproc=nproc), env=env)
    return run
