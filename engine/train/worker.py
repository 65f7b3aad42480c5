"""The engine process of a pre-training run: ``python -m engine.train.worker --run-dir DIR``.

Started detached by :mod:`engine.train.launch` (or by ``torchrun`` for several GPUs). Rank 0 owns
the run directory through :func:`engine.runs.run_context` (status, signals, events); the other
ranks only compute and follow rank 0's stop and checkpoint decisions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from engine.config.errors import ConfigError
from engine.config.train import TrainConfig
from engine.preflight import check_resume
from engine.runs.session import run_context
from engine.runs.store import RunDir


def run_training(run: RunDir, *, resume: bool = False, install_signals: bool = True) -> None:
    """Train the run described by ``run.json`` (rank 0 owns the run directory).

    A resume without a checkpoint is refused first (:func:`check_resume`), before the trainer
    prepares (perhaps tokenizes) the data or builds the model."""
    from engine.train.trainer import DistInfo, Trainer, TrainingStopped

    cfg = TrainConfig.from_dict(run.read_meta().config)
    info = DistInfo.from_env()
    if info.is_main:
        with run_context(run, install_signals=install_signals) as session:
            try:
                if resume:
                    check_resume(run)
                Trainer(cfg, run.path, session, resume=resume, dist_info=info).run()
            except (TrainingStopped, ConfigError) as exc:  # explained failures: no traceback
                session.set_outcome("failed", str(exc))
                print(f"training stopped: {exc}", file=sys.stderr, flush=True)
    else:
        # torchrun forwards SIGTERM to every rank; only rank 0 decides when to stop.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with contextlib.suppress(TrainingStopped, ConfigError):  # rank 0 reports it
            if resume:
                check_resume(run)
            Trainer(cfg, run.path, None, resume=resume, dist_info=info).run()


def agree_with_rank_0(resume: bool) -> bool:
    """Every rank takes global rank 0's decision to resume: nodes launched with ``--resume``,
    ``--resume-auto`` or neither (node 0 started fresh, a joining node) never disagree."""
    import torch.distributed as dist

    decision = [resume]
    dist.broadcast_object_list(decision, src=0)
    return bool(decision[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.train.worker")
    parser.add_argument("--run-dir", type=Path, default=os.environ.get("CANVAS_RUN_DIR"))
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--resume-auto",
        action="store_true",
        help="continue from the last checkpoint if the run has one, else start (a node joining a "
        "multi-node run; a requeued SLURM job)",
    )
    args = parser.parse_args(argv)
    if args.run_dir is None:
        parser.error("--run-dir is required")
    run = RunDir(Path(args.run_dir).resolve())
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if distributed:
        import torch
        import torch.distributed as dist

        if torch.cuda.is_available():  # this rank's own GPU, before any collective (nccl)
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        resume = bool(args.resume or (args.resume_auto and run.latest_checkpoint() is not None))
        if distributed:
            resume = agree_with_rank_0(resume)
        run_training(run, resume=resume)
    finally:
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
