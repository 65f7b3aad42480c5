"""``canvas chat [MODEL [MODEL2 [MODEL3]]]``: open the console on the Chat screen with those models."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat",
        help="talk to models in the console (two or three: side by side)",
        description="Open the console on the Chat screen. Each MODEL is a run (id, id prefix or name), "
        "a model folder or a cached Hub id; two or three are shown side by side, and the same prompt "
        "goes to each. With none, the model picker opens. --base adds a fine-tune's base (its adapter "
        "off, on the same loaded weights) beside it.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="up to three models")
    p.add_argument(
        "--checkpoint", metavar="best|last|STEP", help="which checkpoint of a run, for every MODEL"
    )
    p.add_argument(
        "--base", action="store_true", help="beside each fine-tune, its base model (the adapter switched off)"
    )
    p.set_defaults(func=run)


def choices(args: argparse.Namespace) -> list:
    """The Chat screen's columns for these arguments; CliError for more than three."""
    from canvas_tui.chat_models import MAX_COLUMNS, choice_for
    from canvas_tui.cli import CliError
    from engine.runs.meta import RunKind

    out = []
    for ref in args.models:
        choice = choice_for(ref, args.checkpoint)
        out.append(choice)
        if args.base and choice.kind == RunKind.FINETUNE:
            out.append(choice.with_adapter(False))
    if len(out) > MAX_COLUMNS:
        raise CliError(
            f"{len(out)} models asked for; the Chat screen shows at most {MAX_COLUMNS} side by side. "
            "Fix: name fewer models (--base counts as one per fine-tune)."
        )
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    from canvas_tui.cli import CliError

    picked = choices(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError(
            "the chat needs an interactive terminal (stdin and stdout are not a TTY). "
            "From scripts use `canvas generate MODEL --prompt TEXT`."
        )
    from canvas_tui.app import CanvasApp

    CanvasApp(chat_choices=picked).run()
    return 0
