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
from canvas_tui.fmt import fmt_duration
from engine.config.presets import PRESETS
from engine.config.train import TrainConfig, load_train_config

POLL_S = 0.25


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="pre-train a model from scratch (detached engine; progress in the foreground)",
        description="Start a pre-training run. Settings come from the preset, then --config, then "
        "--data, then each --set KEY=VALUE (see the README for every key: max_steps, epochs, "
        "max_tokens, lr, micro_batch, grad_accum, seq_len, precision, compile, model.n_layers, …).",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="model and recipe preset (default: tiny)")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.preset, args.config, args.sets, args.data)
    from engine.data.spec import parse_spec, validate_spec

    validate_spec(parse_spec(cfg.data, field_name="data"), field_name="data")
    if args.nproc < 1:
        raise CliError(f"--nproc {args.nproc}: use 1 or more processes.")
    check_hardware(cfg)
    if args.dry_run:
        from engine.config.train import config_json

        print(config_json(cfg))
        return 0
    from engine.train.launch import start_training_run

    return launch(lambda: start_training_run(cfg, args.name, nproc=args.nproc), "run", args.detach)


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


def check_hardware(cfg: TrainConfig) -> None:
    check_device(cfg.device, "precision", cfg.precision)


def check_device(device: str, precision_key: str, precision: str) -> None:
    """Refuse before launching what this machine's torch build cannot do (read without torch)."""
    from engine.config.errors import ConfigError
    from engine.sysinfo import torch_build

    build = torch_build()
    cpu_only = build.get("installed") and not build.get("cuda") and not build.get("hip")
    if cpu_only and device in ("auto", "cpu") and precision == "fp16":
        raise ConfigError(
            precision_key,
            f"{precision_key} = fp16 needs a GPU, and this torch build is "
            f"CPU-only ({build['summary']}). Fix: use {precision_key}=auto (bf16 where the "
            "CPU has it).",
        )
    if cpu_only and device.startswith("cuda"):
        raise ConfigError(
            "device",
            f"device = {device}, but this torch build is CPU-only "
            f"({build['summary']}). Fix: use device=auto or cpu, or install a CUDA build.",
        )


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "#" * filled + "." * (width - filled)


class ProgressView:
    """One redrawn line on a terminal (plain lines when redirected), plus lines for notable events."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total: int | None = None
        self.last_metric: dict[str, Any] | None = None
        self.val: float | None = None
        self._open = False

    def _line(self, text: str) -> None:
        if self._open:
            self.stream.write("\r\x1b[2K")
            self._open = False
        self.stream.write(text + "\n")

    def _redraw(self) -> None:
        m = self.last_metric
        if m is None:
            return
        step, total = m.get("step", 0), self.total or 0
        loss = m.get("loss")
        rate = m.get("tokens_per_s") or 0
        eta = (total - step) * (m.get("step_time") or 0) if total else None
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

    def handle(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "run_info":
            self.total = record.get("total_steps") or self.total
            params = f"{record.get('params') or 0:,} parameters"
            if record.get("trainable_params") is not None:  # a fine-tune: the base, and what trains
                share = 100 * record["trainable_params"] / max(1, record.get("params") or 1)
                params = (
                    f"base {record.get('base')}: {params} ({record.get('quantization')}), "
                    f"{record['trainable_params']:,} trainable ({share:.2f}%)"
                )
            self._line(
                f"{params}, {record.get('precision')} ({record.get('precision_reason')}), "
                f"{self.total} steps on {record.get('device')}"
            )
        elif kind == "metric":
            self.last_metric = record
            self._redraw()
        elif kind == "eval":
            self.val = record.get("val_loss")
            self._line(
                f"step {record.get('step')}: validation loss {self.val:.4f} "
                f"(perplexity {record.get('perplexity', float('nan')):.1f})"
            )
        elif kind == "checkpoint":
            self._line(f"step {record.get('step')}: checkpoint {record.get('kind')} -> {record.get('path')}")
        elif kind == "progress":
            done, total = record.get("done") or 0, record.get("total")
            if self.tty:
                frac = f" {done / total:4.0%}" if total else ""
                self.stream.write(f"\r\x1b[2K{record.get('phase')}{frac}")
                self._open = True
        elif kind == "log" and record.get("level") in ("warning", "error"):
            self._line(f"{record.get('level')}: {record.get('message')}")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def follow(run_dir: Any, stream: TextIO | None = None) -> int:
    """Show the run's progress until it ends; Ctrl-C stops it gracefully (with a checkpoint)."""
    from engine.runs import EventReader, run_status
    from engine.runs.control import stop_run

    view = ProgressView(stream or sys.stdout)
    reader = EventReader(run_dir.events_path, 0)
    stopping = False
    try:
        while True:
            status = run_status(run_dir, tail=0)
            ended = not status.is_live
            try:
                for record in reader.read_new():
                    view.handle(record)
            except KeyboardInterrupt:
                raise
            if ended:
                break
            try:
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                view.close()
                print(
                    f"\nstopping run {run_dir.id} gracefully (finishing the step and writing a "
                    "checkpoint; Ctrl-C again to leave it running)…",
                    file=sys.stderr,
                    flush=True,
                )
                stop_run(run_dir)
    except KeyboardInterrupt:
        view.close()
        print(
            f"left run {run_dir.id} running in the background: `canvas logs {run_dir.id} -f`.",
            file=sys.stderr,
        )
        return 130
    view.close()
    status = run_status(run_dir, tail=12)
    message = f": {status.message}" if status.message else ""
    print(f"run {run_dir.id} {status.state}{message}", flush=True)
    if status.state == "stopped":
        print(f"continue it with `canvas resume {run_dir.id}`", flush=True)
    if status.state in ("failed", "crashed") and getattr(status, "log_tail", None):
        print(
            "last lines of engine.log:\n" + "\n".join(f"| {line}" for line in status.log_tail),
            file=sys.stderr,
        )
    return 0 if status.state in ("finished", "stopped") else 1
