"""The README's command-line reference, generated from the parser itself so it cannot drift.

Every command of :func:`canvas_tui.cli.build_parser` (sub-commands included) with its summary and
a table of its arguments: flag or positional, default, help. The README holds the output between
:data:`BEGIN` and :data:`END`; ``python -m canvas_tui.cli_doc --write README.md`` regenerates the
block, ``--check README.md`` exits 1 when it differs (``tests/test_readme_reference.py`` runs the
check), and without either the block is printed. It lives in the console package because the
engine never imports the console (``[tool.importlinter]``). Torch-free.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from engine.docblock import DocBlock, cell, table


def _code(text: str) -> str:
    """``text`` as inline code in a table cell (pipes escaped, backticks doubled around backticks)."""
    text = cell(text)
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def commands(
    parser: argparse.ArgumentParser, prefix: str = "canvas"
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(``canvas train``, its one-line help, its parser) for every command, depth first, in the
    order the parser registers them."""
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    for name, child in sub.choices.items():
        path = f"{prefix} {name}"
        yield path, helps.get(name, ""), child
        yield from commands(child, path)


def _default(action: argparse.Action) -> str:
    """The default as a table cell: empty when it says nothing (None, False, [], a flag)."""
    if isinstance(action, argparse._StoreConstAction | argparse._CountAction):
        return ""  # store_true / store_false / store_const: the flag's absence is the default
    default = action.default
    if default in (None, argparse.SUPPRESS, [], ()) or default is False:
        return ""
    if isinstance(default, Path):
        default = str(default)
    return _code(str(default))


def _argument(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    if action.option_strings:
        return _code(formatter._format_action_invocation(action))
    return _code(formatter._format_args(action, formatter._get_default_metavar_for_positional(action)))


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    return cell(parser._get_formatter()._expand_help(action))


def arguments_table(parser: argparse.ArgumentParser) -> list[str]:
    """One row per argument of ``parser`` (``--help`` and sub-command choosers left out)."""
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        rows.append([_argument(parser, action), _default(action), _help(parser, action)])
    return table(["argument", "default", "meaning"], rows) if rows else []


def body() -> list[str]:
    """The block's text: the options of ``canvas`` itself, then every command and its arguments."""
    from canvas_tui.cli import build_parser

    parser = build_parser()
    lines = [
        "Every command takes `--help`. Options of `canvas` itself (before the command):",
        "",
        *arguments_table(parser),
    ]
    for path, summary, child in commands(parser):
        lines += ["", f"**`{path}`**" + (f": {cell(summary)}" if summary else "")]
        if _subparsers(child) is not None:
            names = ", ".join(f"`{name}`" for name, _, _ in commands(child, path) if name.count(" ") == 2)
            lines += ["", f"Sub-commands: {names}."]
        rows = arguments_table(child)
        if rows:
            lines += ["", *rows]
    return lines


BLOCK = DocBlock(
    "cli",
    "canvas_tui.cli_doc",
    "canvas_tui/cli.py's parser",
    body,
    what="command-line reference",
    stale="the command-line reference differs from the parser; regenerate it with `{regenerate}`.",
    description=__doc__,
)
BEGIN, END, REGENERATE = BLOCK.begin, BLOCK.end, BLOCK.regenerate
render, current_block, write, main = BLOCK.render, BLOCK.current, BLOCK.write, BLOCK.main


if __name__ == "__main__":
    sys.exit(main())
