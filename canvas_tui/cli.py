"""The ``canvas`` command line. Torch-free at import: each sub-command imports heavy code when run.

Sub-commands live one per module in :mod:`canvas_tui.commands`; each module exposes
``register(subparsers)`` and sets ``func`` on its parser. Adding a command is adding a module and
a line in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from canvas_tui import __version__
from engine.config.errors import ConfigError
from engine.locations import HOME_ENV

COMMAND_MODULES = (
    "info",
    "export",
    "demo",
    "data",
    "runs",
    "train",
    "finetune",
    "generate",
    "serve",
    "eval",
    "score",
    "chat",
    "arena",
    "console",
)


class CliError(Exception):
    """A user-facing failure: printed as one paragraph, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canvas",
        description=(
            "Neural Canvas: pre-train Llama-style models from scratch and QLoRA-fine-tune "
            "pre-trained ones, in runs that survive the terminal. With no command, opens the "
            "console (`canvas console`); `canvas demo` is the short headless training demo."
        ),
    )
    parser.add_argument("--version", action="version", version=f"canvas {__version__}")
    parser.add_argument(
        "--home",
        metavar="DIR",
        type=Path,
        help=f"keep runs, cache and settings under DIR (same as setting {HOME_ENV}; "
        "default: the platform's user data, cache and config directories)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"canvas_tui.commands.{name}").register(sub)
    return parser


#: The exit status of a command whose reader went away (``canvas runs | head -1``): 128 + SIGPIPE,
#: what a shell reports for a program killed by the broken pipe.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A reader of stdout that goes away (``| head -1``) ends it quietly."""
    try:
        try:
            code = _main(argv)
        except SystemExit:  # argparse's --help, --version and usage errors: flush their text here too
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # now, not at interpreter exit, so a closed pipe is caught here
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's flush at exit finds no closed pipe to report
    (the recipe of Python's signal documentation, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (a test's capture)
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.home is not None:
        # Through the environment so that engine processes started from here inherit it.
        os.environ[HOME_ENV] = str(args.home.expanduser().resolve())
    if args.command is None:
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "console"])
    try:
        return int(args.func(args) or 0)
    except (CliError, ConfigError) as exc:
        print(f"canvas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("canvas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
