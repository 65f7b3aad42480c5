"""``canvas demo``: the tiny model learns the embedded corpus, headless, in a minute or two.

It is a real ``pretrain`` run (listed by ``canvas runs`` afterwards) trained in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train the tiny model briefly on the embedded text, headless, and print a sample",
        description="Prepare the embedded offline corpus (cached after the first time), train the "
        "tiny preset on it for a few hundred steps and print a sample. Needs no network and no GPU.",
    )
    p.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    p.add_argument("--micro-batch", type=int, default=8, help="sequences a step (default: 8)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens a sequence (default: 256)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", type=Path, help="save the trained weights and tokenizer to this folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from canvas_tui.cli import CliError
    from canvas_tui.commands.data import ProgressBar

    if args.steps < 1:
        raise CliError(f"--steps {args.steps}: train at least one step. Fix: --steps 300.")
    print(
        "Neural Canvas demo: headless training of the tiny model on the embedded corpus "
        "(`canvas train` for a real run you can watch in the console).",
        flush=True,
    )
    from engine.demo import DemoStopped, run_demo

    bar = ProgressBar()
    try:
        run_demo(
            args.steps,
            micro_batch=args.micro_batch,
            seq_len=args.seq_len,
            seed=args.seed,
            out=args.out,
            progress=bar,
            echo=lambda s: print(s, flush=True),
        )
    except DemoStopped as exc:  # explained (and recorded in the run): no traceback
        raise CliError(f"the demo's run failed: {exc}") from None
    finally:
        bar.close()
    return 0
