"""The ``canvas`` command line. Torch-free at import: each sub-command imports heavy code when run.

Sub-commands live one per module in :mod:`canvas_tui.commands`; each module exposes
``register(subparsers)`` and sets ``func`` on its parser. Adding a command is adding a module and
a line in ``COMMAND_MODULES`` (and in ``EXTRA_COMMANDS`` when the module registers more than one
sub-command). A command line that names its command imports that command's module only: plain
``canvas`` (the console) no longer imports every other command to build its parser (~0.2 CPU-s).
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

#: The sub-commands a module registers, where they are not just the module's name
#: (``tests/test_import_hygiene.py`` checks this against the parsers themselves).
EXTRA_COMMANDS = {"runs": ("status", "logs", "stop", "checkpoint", "resume", "rm")}
#: Which module registers each sub-command: ``canvas train …`` imports the train module only.
MODULE_OF = {
    command: module for module in COMMAND_MODULES for command in (module, *EXTRA_COMMANDS.get(module, ()))
}


class CliError(Exception):
    """A user-facing failure: printed as one paragraph, exit status 2, no traceback."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only`` (a module of :data:`COMMAND_MODULES`), the sub-commands
    of that module alone: what :func:`main` builds when ``argv`` names its command, so ``canvas``
    (the console) or ``canvas runs`` does not import the code of every other command."""
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
    for name in COMMAND_MODULES if only is None else (only,):
        importlib.import_module(f"canvas_tui.commands.{name}").register(sub)
    return parser


def command_module(argv: Sequence[str]) -> str | None:
    """The one command module ``argv`` needs, or None when it needs them all (``--help`` before the
    command, or a word that is no command: argparse lists every choice). No command at all is the
    console (``canvas``, ``canvas --home DIR``)."""
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            return None
        if arg == "--home":
            next(args, None)
        elif not arg.startswith("-"):
            return MODULE_OF.get(arg)
    return "console"


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
    argv = list(argv if argv is not None else sys.argv[1:])
    parser = build_parser(command_module(argv))
    args = parser.parse_args(argv)
    if args.home is not None:
        # Through the environment so that engine processes started from here inherit it.
        os.environ[HOME_ENV] = str(args.home.expanduser().resolve())
    if args.command is None:
        args = parser.parse_args([*argv, "console"])
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
