"""Creating a fine-tune's run directory and launching its engine detached. Torch-free.

Front ends call :func:`engine.finetune.preflight.start`, which preflights the config (and pins the
base) before it calls :func:`start_finetune_run`, so bad input never leaves a run directory behind.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.config.finetune import FinetuneConfig
from engine.runs import create_run, launch_detached
from engine.runs.meta import RunKind
from engine.runs.process import python_argv
from engine.runs.store import RunDir

WORKER = "engine.finetune.worker"
KIND = RunKind.FINETUNE


def worker_argv(run_dir: str, resume: bool = False) -> list[str]:
    return python_argv(WORKER, "--run-dir", run_dir, *(["--resume"] if resume else []))


def create_finetune_run(cfg: FinetuneConfig, name: str | None = None) -> RunDir:
    cfg.validate()
    return create_run(KIND, name, cfg.to_dict(), resume_argv=worker_argv("{run_dir}", resume=True))


def start_finetune_run(
    cfg: FinetuneConfig, name: str | None = None, *, env: Mapping[str, str] | None = None
) -> RunDir:
    """Create the run directory and launch its engine detached; returns at once."""
    run = create_finetune_run(cfg, name)
    launch_detached(run, worker_argv(str(run.path)), env=env)
    return run
