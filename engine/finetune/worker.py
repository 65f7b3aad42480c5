"""The engine process of a fine-tune: ``python -m engine.finetune.worker --run-dir DIR [--resume]``.

Started detached by :mod:`engine.finetune.launch`; owns the run directory through
:func:`engine.runs.run_context` (status, signals, events), exactly as a pre-training worker does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.config.errors import ConfigError
from engine.config.finetune import FinetuneConfig
from engine.preflight import check_resume
from engine.runs.session import run_context
from engine.runs.store import RunDir


def run_finetune(run: RunDir, *, resume: bool = False, install_signals: bool = True) -> None:
    """Fine-tune the run described by ``run.json``; a resume without a checkpoint is refused first
    (:func:`check_resume`), before the base model is loaded or the conversations are read."""
    from engine.finetune.trainer import FinetuneTrainer
    from engine.train.loop import TrainingStopped

    cfg = FinetuneConfig.from_dict(run.read_meta().config)
    with run_context(run, install_signals=install_signals) as session:
        try:
            if resume:
                check_resume(run)
            FinetuneTrainer(cfg, run.path, session, resume=resume).run()
        except (TrainingStopped, ConfigError) as exc:  # explained failures: no traceback
            session.set_outcome("failed", str(exc))
            print(f"fine-tune stopped: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.finetune.worker")
    parser.add_argument("--run-dir", type=Path, default=os.environ.get("CANVAS_RUN_DIR"))
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    if args.run_dir is None:
        parser.error("--run-dir is required")
    run_finetune(RunDir(Path(args.run_dir).resolve()), resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
