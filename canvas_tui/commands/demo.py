"""``canvas demo``: the tiny model learns the embedded corpus, headless, in a minute or two.

Plain ``canvas demo`` is a real ``pretrain`` run (listed by ``canvas runs`` afterwards) trained in
the foreground. ``canvas demo --headless`` runs the whole demo chain of :mod:`engine.demo_chain`
(Model 1 pre-trained, Model 2 fine-tuned from it, both evaluated, both answering one question) as
detached runs, follows it on the terminal and prints a summary table; the console (``canvas``)
shows the same chain. Closing the terminal leaves the chain going; running the command again
follows it where it is."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from engine.demo_chain import QUESTION, Chain, DemoSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train the tiny model briefly on the embedded text and print a sample; --headless: the "
        "whole demo chain (pre-train, fine-tune, evaluate, chat) with a summary table",
        description="Without --headless: prepare the embedded offline corpus (cached after the first "
        "time), train the tiny preset on it for a few hundred steps in the foreground and print a sample. "
        "With --headless: the demo chain the console shows on its welcome screen, as detached runs: "
        "Model 1 pre-trained on the embedded corpus, Model 2 fine-tuned from it on the embedded "
        "conversations, both evaluated (`canvas eval`), both asked one question; progress on the "
        "terminal, then a summary table. Closing the terminal leaves the chain going; the same command "
        "picks it up where it is (--restart starts a new one). Needs no network and no GPU; uses a "
        "CUDA GPU (bf16, torch.compile) when there is one.",
    )
    p.add_argument("--steps", type=int, default=300, help="(pre-)training steps (default: 300)")
    p.add_argument("--micro-batch", type=int, default=8, help="sequences a step (default: 8)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens a sequence (default: 256)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", type=Path, help="save the trained weights and tokenizer to this folder")
    chain = p.add_argument_group("the demo chain (--headless)")
    chain.add_argument(
        "--headless", action="store_true", help="run the whole demo chain without the console (see above)"
    )
    chain.add_argument(
        "--finetune-steps", type=int, default=60, help="Model 2's fine-tuning steps (default: 60)"
    )
    chain.add_argument(
        "--eval-docs", type=int, default=20, help="held-out documents each model is scored on (default: 20)"
    )
    chain.add_argument(
        "--new-tokens",
        type=int,
        default=32,
        help="tokens written per evaluation sample and answer (default: 32)",
    )
    chain.add_argument(
        "--question", default=QUESTION, help=f"what both models are asked (default: {QUESTION!r})"
    )
    chain.add_argument("--restart", action="store_true", help="start a new chain even if one is under way")
    control = chain.add_mutually_exclusive_group()
    control.add_argument("--skip", action="store_true", help="skip the chain's current step and return")
    control.add_argument(
        "--stop", action="store_true", help="stop the chain (its run keeps a checkpoint) and return"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from canvas_tui.cli import CliError
    from canvas_tui.commands.data import ProgressBar

    if args.skip or args.stop:
        return _control(args)
    if args.headless:
        return run_headless(args)

    if args.steps < 1:
        raise CliError(f"--steps {args.steps}: train at least one step. Fix: --steps 300.")
    print(
        "Neural Canvas demo: the tiny model trains on the embedded corpus in the foreground "
        "(`canvas demo --headless` runs the whole demo: pre-train, fine-tune, evaluate, chat).",
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


# ------------------------------------------------------------------------------ --headless
POLL_S = 0.5


def _settings(args: argparse.Namespace) -> DemoSettings:
    return DemoSettings(
        steps=args.steps,
        micro_batch=args.micro_batch,
        seq_len=args.seq_len,
        finetune_steps=args.finetune_steps,
        eval_docs=args.eval_docs,
        new_tokens=args.new_tokens,
        question=args.question,
        seed=args.seed,
    )


def _control(args: argparse.Namespace) -> int:
    from canvas_tui.cli import CliError
    from engine import demo_chain
    from engine.runs.store import RunStoreError

    try:
        print(demo_chain.skip() if args.skip else demo_chain.stop(), flush=True)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    return 0


def run_headless(args: argparse.Namespace) -> int:
    """Start (or pick up) the chain, make sure its driver runs, follow it, print the summary."""
    from canvas_tui.cli import CliError
    from engine import demo_chain
    from engine.config.errors import ConfigError
    from engine.runs.store import RunStoreError

    if args.out is not None:
        raise CliError(
            "--out goes with the foreground demo, not --headless. Fix: drop --out (or --headless)."
        )
    settings = _settings(args)
    try:
        settings.check()
        chain = demo_chain.load_chain()
        if chain is None or chain.finished or args.restart:
            if chain is not None and not chain.finished:  # --restart: the old chain's run stops first
                print(demo_chain.stop(), flush=True)
            chain = demo_chain.new_chain(settings)
            print(chain.device, flush=True)
            print(
                "Neural Canvas demo, headless: " + ", then ".join(demo_chain.TITLES.values()) + ".",
                flush=True,
            )
        else:
            print(
                f"picking up the demo where it is: {chain.step} ({demo_chain.TITLES[chain.step]})", flush=True
            )
            if settings != chain.settings:
                print(
                    "canvas: note: it keeps the settings it started with (--restart starts anew)",
                    file=sys.stderr,
                )
            if chain.paused:
                print(demo_chain.resume(), flush=True)
        demo_chain.ensure_driver()
    except (ConfigError, RunStoreError) as exc:
        raise CliError(str(exc)) from None
    try:
        chain = follow(sys.stdout)
    except KeyboardInterrupt:
        print(
            "\nleft the demo going in the background: `canvas demo --headless` follows it again, `canvas` "
            "shows it, `canvas demo --stop` stops it.",
            flush=True,
        )
        return 130
    if not chain.finished:
        print(f"the demo paused: {chain.message}", flush=True)
        print("`canvas demo --headless` resumes it; `canvas demo --skip` skips the step.", flush=True)
        return 1
    print("", flush=True)
    print(demo_chain.render_summary(chain), flush=True)
    return 0


def follow(stream: TextIO) -> Chain:
    """Print the chain's progress (step changes, the current run's losses and evaluations) until it
    is over or paused; restarts the driver if it died. Returns the last chain read."""
    from engine import demo_chain
    from engine.runs.events import Eval, Log, Metric, Progress, RunInfo, Sample
    from engine.runs.format import plain
    from engine.runs.reader import EventReader

    readers: dict[str, EventReader] = {}
    states: dict[str, str] = {}
    totals: dict[str, int] = {}
    phases: dict[str, str] = {}
    while True:
        chain = demo_chain.load_chain()
        if chain is None:
            raise SystemExit("the demo's file disappeared")
        for step in demo_chain.STEPS:
            st = chain.steps[step]
            label = f"{st.state}" + (f" ({st.run})" if st.run else "")
            if states.get(step) != label and st.state != demo_chain.PENDING:
                states[step] = label
                stream.write(f"[{step}] {label}: {demo_chain.TITLES[step]}\n")
            run = chain.run_of(step)
            if run is None:
                continue
            reader = readers.setdefault(step, EventReader(run.events_path))
            for event in reader.read_events():
                if isinstance(event, RunInfo) and event.total_steps:
                    totals[step] = event.total_steps
                    stream.write(
                        f"[{step}] {event.params or 0:,} parameters on {event.device} in {event.precision}"
                        f"{', compiled' if event.compiled else ''}, {event.total_steps} steps\n"
                    )
                elif isinstance(event, Metric) and event.loss is not None:
                    total = totals.get(step, 0)
                    if event.step == total or event.step % max(1, total // 10) == 0:
                        stream.write(f"[{step}] step {event.step}/{total or '?'}  loss {event.loss:.3f}\n")
                elif isinstance(event, Eval) and event.val_loss is not None:
                    stream.write(f"[{step}] validation loss {event.val_loss:.3f} at step {event.step}\n")
                elif isinstance(event, Sample) and not event.index:
                    writing = plain(" ".join((event.prompt + event.text).split()))[:100]
                    stream.write(f"[{step}] it writes at step {event.step}: {writing!r}\n")
                elif isinstance(event, Progress) and phases.get(step) != event.phase:
                    phases[step] = event.phase
                    stream.write(f"[{step}] {plain(event.phase)}\n")
                elif isinstance(event, Log) and event.level in ("warning", "error"):
                    stream.write(f"[{step}] {event.level}: {plain(event.message)}\n")
        stream.flush()
        if chain.finished or chain.paused:
            return chain
        demo_chain.ensure_driver()  # a driver that died (killed, machine rebooted) is replaced
        time.sleep(POLL_S)
