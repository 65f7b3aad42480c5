"""A tiny but real engine process for the run-store tests, until the training loop exists.

It uses the engine-side helpers exactly as the training loop will: :func:`run_context` (pid and
start time in run.json, signal flags, final status), ``emit`` for ``run_info``/``metric``/
``checkpoint`` events, checkpoints written with :func:`atomic_path`, and resume from the last
checkpoint continuing the step count. Each "step" sleeps ``--step-time`` seconds instead of
training, so the tests exercise processes, signals and files, not arithmetic.

    python tests/engine_stub.py RUN_DIR --steps N --step-time S [--checkpoint-every K] [--fail-at K]
                                [--startup-delay S]
    python tests/engine_stub.py start --name NAME --steps N --step-time S [--follow]

The second form is what a user does from a shell: create a run, launch the engine detached, print
the run id and (with ``--follow``) follow it through ``canvas logs -f``, the way the later
``canvas train`` will.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere: find `engine`

from engine.runs import atomic_path, create_run, launch_detached, run_context  # noqa: E402

CHECKPOINT = "stub-state.ckpt"  # a file checkpoint (not the real layout's pointer names)


def engine_argv(run_dir: str | Path, steps: int, step_time: float, *extra: str) -> list[str]:
    """The engine command line for ``run_dir`` (``{run_dir}`` is filled in at resume time)."""
    return [
        sys.executable,
        str(HERE),
        str(run_dir),
        "--steps",
        str(steps),
        "--step-time",
        str(step_time),
        *extra,
    ]


def save_checkpoint(session, step: int, kind: str = "last") -> None:
    final = session.run.checkpoints_dir / CHECKPOINT
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps({"step": step}))
    session.emit("checkpoint", step=step, path=f"checkpoints/{CHECKPOINT}", kind=kind)


def run_engine(args: argparse.Namespace) -> None:
    resume = engine_argv(
        "{run_dir}", args.steps, args.step_time, "--checkpoint-every", str(args.checkpoint_every)
    )
    time.sleep(args.startup_delay)  # stands in for a slow `import torch` before the run is owned
    with run_context(args.run_dir, resume_argv=resume) as session:
        ckpt = session.run.checkpoints_dir / CHECKPOINT
        done = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
        session.emit(
            "run_info",
            total_steps=args.steps,
            params=0,
            precision="fp32",
            device="cpu",
            config={"stub": True, "step_time": args.step_time},
        )
        if done:
            session.log(f"resumed from step {done}")
        for step in range(done + 1, args.steps + 1):
            time.sleep(args.step_time)
            if step == args.fail_at:
                raise RuntimeError(f"stub engine failed on purpose at step {step}")
            loss = 4.0 * math.exp(-3.0 * step / args.steps)
            session.emit(
                "metric",
                step=step,
                loss=loss,
                lr=3e-4,
                tokens_per_s=1000.0 / args.step_time,
                step_time=args.step_time,
                tokens=step * 1000,
            )
            print(f"step {step} loss {loss:.4f}", flush=True)
            if session.stop_requested:
                save_checkpoint(session, step)
                print(f"stopping at step {step}: {session.stop_reason}", flush=True)
                break
            if session.checkpoint_requested():
                save_checkpoint(session, step, kind="step")
            elif args.checkpoint_every and step % args.checkpoint_every == 0:
                save_checkpoint(session, step)
        else:
            save_checkpoint(session, args.steps)
            print("done", flush=True)


def start(args: argparse.Namespace) -> int:
    run = create_run("pretrain", args.name, {"stub": True, "steps": args.steps})
    launch_detached(run, engine_argv(run.path, args.steps, args.step_time))
    print(run.id, flush=True)
    if args.follow:
        from canvas_tui.cli import main

        return main(["logs", run.id, "-f"])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="engine_stub")
    if argv[:1] == ["start"]:
        p.add_argument("start")
        p.add_argument("--name", default=None)
        p.add_argument("--follow", action="store_true")
    else:
        p.add_argument("run_dir")
        p.add_argument("--checkpoint-every", type=int, default=5)
        p.add_argument("--fail-at", type=int, default=0)
        p.add_argument("--startup-delay", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--step-time", type=float, default=0.05)
    args = p.parse_args(argv)
    if argv[:1] == ["start"]:
        return start(args)
    print(f"stub engine pid {os.getpid()} for {args.run_dir}", flush=True)
    run_engine(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
