"""``canvas train``: start a pre-training run, detached, and (in the foreground) show its progress.

The engine always runs as a detached process, so the run survives this terminal whatever
happens to it; the foreground view is a follower. Ctrl-C asks the run to stop gracefully (it
finishes the step and checkpoints); closing the terminal leaves it running
(``canvas logs RUN -f`` re-attaches).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from canvas_tui.cli import CliError
from canvas_tui.commands import cluster_args
from canvas_tui.commands.follow import follow_events, log_tail_text, show_warnings
from canvas_tui.fmt import fmt_duration
from engine.config.presets import PRESETS
from engine.config.train import load_train_config
from engine.runs.events import Checkpoint, Eval, Event, Log, Metric, Progress, RunInfo
from engine.runs.format import format_event


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="pre-train a model from scratch (detached engine; progress in the foreground)",
        description="Start a pre-training run. Settings come from the preset, then --config, then "
        "--data, then each --set KEY=VALUE (see the README for every key: max_steps, epochs, "
        "max_tokens, lr, micro_batch, grad_accum, seq_len, precision, compile, model.n_layers, …).",
    )
    p.add_argument(
        "--preset",
        metavar="{" + ",".join(sorted(PRESETS)) + "}",
        help="model and recipe preset (default: tiny)",
    )
    p.add_argument("--config", type=Path, metavar="RUN.TOML", help="a TOML file of run-config keys")
    p.add_argument("--data", metavar="SPEC", help="data spec (default: embedded, the offline corpus)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one run-config key; repeatable",
    )
    p.add_argument("--name", help="a name for the run (default: pretrain-<id suffix>)")
    p.add_argument("--detach", action="store_true", help="print the run id and return at once")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="processes (GPUs) for distributed data parallel training through torchrun",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved config only")
    cluster_args.register(p)  # --nnodes/--node-rank/--rdzv-*/--run and --slurm (several machines)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the config from the flags, then check and start it through the one pre-training path
    (:mod:`engine.train.preflight`) that the console and the demo take too."""
    spec = cluster_args.slurm_spec(args)  # None without --slurm
    nodes = cluster_args.nodes_from(args)  # None on one machine; checked before anything is created
    if args.run:  # node R > 0 of a multi-node run: the run and its config exist already
        return cluster_args.join(args, nodes, follow)
    cfg = load_train_config(args.preset, args.config, args.sets, args.data)
    if spec is not None:  # a SLURM batch job: the script is written and submitted, or printed
        return cluster_args.submit_slurm(args, cfg, spec)
    from engine.train import preflight

    if args.dry_run:
        from engine.config.train import config_json

        checked = preflight.preflight(cfg, nproc=args.nproc)
        show_warnings(checked.warnings)
        print(config_json(checked.config))
        return 0

    def start() -> Any:
        from canvas_tui.commands.data import ProgressBar

        bar = ProgressBar()  # reading the data files: shown when it takes over a second
        try:
            run_dir, checked = preflight.start(cfg, args.name, nproc=args.nproc, progress=bar, nodes=nodes)
        finally:
            bar.close()
        show_warnings(checked.warnings)
        return run_dir

    return launch(start, "run", args.detach)


def launch(start: Callable[[], Any], what: str, detach: bool) -> int:
    """Start a run (``start`` creates and launches it), print its id, then follow it or not."""
    from engine.runs.store import RunStoreError

    try:
        run_dir = start()
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    print(run_dir.id, flush=True)
    if detach:
        print(
            f"started {what} {run_dir.id} in the background: `canvas logs {run_dir.id} -f` follows it, "
            f"`canvas stop {run_dir.id}` stops it.",
            file=sys.stderr,
        )
        return 0
    return follow(run_dir)


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "#" * filled + "." * (width - filled)


class ProgressView:
    """One redrawn line on a terminal (plain lines when redirected), plus lines for notable events."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total: int | None = None
        self.last_metric: Metric | None = None
        self.val: float | None = None
        self._open = False
        self.pace: Progress | None = None  # "training" progress between metric events
        self._phase_line: tuple[str, float] = ("", 0.0)  # last phase printed when redirected, and when

    def _line(self, text: str) -> None:
        if self._open:
            self.stream.write("\r\x1b[2K")
            self._open = False
        self.stream.write(text + "\n")

    def _redraw(self) -> None:
        m, pace = self.last_metric, self.pace
        if m is None and pace is None:
            return
        step, total = (m.step or 0) if m is not None else 0, self.total or 0
        loss = m.loss if m is not None else None
        rate = (m.tokens_per_s or 0) if m is not None else 0
        eta = (total - step) * (m.step_time or 0) if total and m is not None else None
        if pace is not None and int(pace.done or 0) > step:  # steps since the last metric event
            step, total = int(pace.done or 0), int(pace.total or total)
            eta = pace.eta
        shown = f"{loss:.4f}" if isinstance(loss, (int, float)) else "?"
        text = f"step {step}/{total or '?'} [{_bar(step / total if total else 0)}] loss {shown}"
        text += f"  {rate:,.0f} tok/s  ETA {fmt_duration(eta)}"
        if self.val is not None:
            text += f"  val {self.val:.4f}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r\x1b[2K" + text[: width - 1])
            self._open = True
        else:
            self._line(text)

    def handle(self, event: Event) -> None:
        """Show one typed event: the progress line for metrics, a line (engine.runs.format) for
        notable ones; status is left to the final summary."""
        if isinstance(event, RunInfo):
            self.total = event.total_steps or self.total
            self._line(format_event(event))
        elif isinstance(event, Metric):
            self.last_metric = event
            self._redraw()
        elif isinstance(event, Progress) and (event.phase or "").startswith("training"):
            if event.phase == "training":
                self.pace = event
                self._redraw()
        elif isinstance(event, Eval):
            self.val = event.val_loss
            self._line(format_event(event))
        elif isinstance(event, Checkpoint):
            self._line(format_event(event))
        elif isinstance(event, Progress):  # a phase before the steps: data preparation, loading
            text = format_event(event) if event.done or event.total else f"{event.phase}…"
            if self.tty:
                self.stream.write("\r\x1b[2K" + text)
                self._open = True
            else:  # redirected: a line when the phase changes, then at most one every 10 s
                phase, at = self._phase_line
                now = time.monotonic()
                if event.phase != phase or now - at >= 10:
                    self._phase_line = (event.phase or "", now)
                    self._line(text)
        elif isinstance(event, Log) and event.level in ("warning", "error"):
            self._line(format_event(event))
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def follow(run_dir: Any, stream: TextIO | None = None) -> int:
    """Show the run's progress until it ends; Ctrl-C stops it gracefully (with a checkpoint)."""
    from engine.runs import run_status
    from engine.runs.control import stop_run
    from engine.runs.errors import RunStoreError
    from engine.runs.format import skipped_note

    view = ProgressView(stream or sys.stdout)

    def stop() -> None:
        view.close()
        print(
            f"\nstopping run {run_dir.id} gracefully (finishing the step and writing a "
            "checkpoint; Ctrl-C again to leave it running)…",
            file=sys.stderr,
            flush=True,
        )
        stop_run(run_dir)

    def detach() -> None:
        view.close()
        print(
            f"left run {run_dir.id} running in the background: `canvas logs {run_dir.id} -f`.",
            file=sys.stderr,
        )

    try:
        reader = follow_events(run_dir, view.handle, stop=stop, detach=detach)
    except RunStoreError:
        if run_dir.path.is_dir():
            raise
        view.close()  # someone deleted the run (canvas rm, rm -rf): its engine stops by itself
        print(
            f"run {run_dir.id} was deleted while it ran; its engine stops without writing.", file=sys.stderr
        )
        return 1
    if reader is None:
        return 130
    view.close()
    note = skipped_note(reader.skipped)
    if note:  # once, however many lines were not events
        print(note, file=sys.stderr, flush=True)
    status = run_status(run_dir, tail=12)
    message = f": {status.message}" if status.message else ""
    print(f"run {run_dir.id} {status.state}{message}", flush=True)
    if status.state == "stopped":
        print(f"continue it with `canvas resume {run_dir.id}`", flush=True)
    tail = log_tail_text(status)
    if tail:
        print(tail, file=sys.stderr)
    return 0 if status.state in ("finished", "stopped") else 1
