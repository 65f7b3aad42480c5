"""The engine process of an ``eval`` run: ``python -m engine.eval.worker --run-dir DIR``.

It owns the run (:func:`engine.runs.session.run_context`: status, signals, the stop control file),
reads its :class:`~engine.eval.launch.EvalConfig` from run.json and runs
:func:`engine.eval.runner.evaluate`. A stop request ends it between documents or samples, as
``stopped`` and without results; an error ends it ``failed`` with the message in run.json and the
traceback in ``engine.log``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_engine(run_dir: str) -> None:
    from engine.eval.launch import EvalConfig
    from engine.eval.runner import Stopped, evaluate
    from engine.runs.session import run_context
    from engine.runs.store import RunDir

    run = RunDir(Path(run_dir).resolve())
    with run_context(run) as s:
        cfg = EvalConfig.from_dict(run.read_meta().config)
        try:
            evaluate(cfg, s)
        except Stopped:
            s.log("stopped before the end: no results written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.eval.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, help="the eval run's directory (made by canvas eval)")
    args = parser.parse_args(argv)
    run_engine(args.run_dir)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
