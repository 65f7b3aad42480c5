"""``canvas finetune``: QLoRA-fine-tune a pre-trained model on conversations (a detached run).

Like ``canvas train``, the engine runs detached and the foreground is a follower: Ctrl-C stops
the run gracefully with a checkpoint, closing the terminal leaves it running. Everything that
can be checked without loading the model is checked here first (base, data fields, LoRA
targets), so a mistake costs seconds, not the minutes a 7B base takes to load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from canvas_tui.commands.follow import show_checked
from canvas_tui.commands.train import launch
from engine.config.finetune import BASE_PRESETS, load_finetune_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="QLoRA-fine-tune a pre-trained model on conversations (4-bit base + LoRA adapters)",
        description="Start a QLoRA fine-tune. The base is a transformers model folder, a Hub id (or one of "
        f"{', '.join(BASE_PRESETS)}), or one of our pre-training runs (default: the newest one with a "
        "checkpoint). Settings come from the defaults (the QLoRA recipe), then --config, then --base / "
        "--data, then each --set KEY=VALUE (quantization, lora_r, lora_alpha, lora_dropout, lora_target, "
        "seq_len, packing, micro_batch, grad_accum, epochs, max_steps, lr, optimizer, chat_template, …; "
        "the README lists every key).",
    )
    p.add_argument(
        "--base",
        metavar="PATH_OR_HUB_ID",
        help="the model to fine-tune (default: the newest pre-training run with a checkpoint)",
    )
    p.add_argument(
        "--data",
        metavar="SPEC",
        help="conversations: embedded (default, offline), guanaco, "
        "oasst1, a .jsonl of {messages: [{role, content}]}, hf:NAME, with ?format=&limit=",
    )
    p.add_argument("--config", type=Path, metavar="FINETUNE.TOML", help="a TOML file of fine-tune keys")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key; repeatable",
    )
    p.add_argument("--name", help="a name for the run (default: finetune-<id suffix>)")
    p.add_argument("--detach", action="store_true", help="print the run id and return at once")
    p.add_argument("--dry-run", action="store_true", help="check everything and print the resolved config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the config from the flags, then check and start it through the one fine-tune path
    (:mod:`engine.finetune.preflight`) that the console takes too."""
    cfg = load_finetune_config(args.base, args.config, args.sets, args.data)
    from engine.finetune import preflight

    picked = not cfg.base.strip()  # no base given: the newest pre-training run that can be one

    if args.dry_run:
        import json

        checked = preflight.preflight(cfg)
        show(checked, picked)
        print(json.dumps(checked.config.to_dict(), indent=2, sort_keys=True))  # the base pinned
        return 0

    def start() -> Any:
        run_dir, checked = preflight.start(cfg, args.name)
        show(checked, picked)
        return run_dir

    return launch(start, "fine-tune", args.detach)


def show(checked: Any, picked: bool = False) -> None:
    base = checked.base
    if picked and base.run is not None:
        checkpoint = base.path.name if base.path is not None else "?"
        print(
            f"no --base given: fine-tuning the newest pre-training run with a usable checkpoint, "
            f"{base.name} (run {base.run}, {checkpoint}); pass --base RUN to choose another "
            "(`canvas runs` lists them).",
            file=sys.stderr,
            flush=True,
        )
    show_checked(checked)
