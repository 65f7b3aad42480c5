"""README blocks generated from code (the run schema, the worker protocol, the CLI and config
references): one frame, one reader, one writer and one command line, shared through
:class:`DocBlock`, and the Markdown table helpers (:func:`cell`, :func:`table`) the generators use.

A block sits between a begin and an end marker comment; ``--check`` compares it with what the code
renders, ``--write`` replaces it, so the README cannot drift from the modules it documents.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


def split_block(text: str, path: Path, begin: str, end: str) -> tuple[str, str, str]:
    """``text`` as (before, block, after) around the markers; ValueError when they are missing."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{path} has no {begin} ... {end} block")
    stop += len(end)
    return text[:start], text[start:stop], text[stop:]


def read_block(path: Path, begin: str, end: str) -> str:
    """The block as the file holds it now."""
    return split_block(path.read_text(encoding="utf-8"), path, begin, end)[1]


def write_block(path: Path, begin: str, end: str, fresh: str) -> bool:
    """Replace the file's block with ``fresh``; True when that changed the file."""
    before, block, after = split_block(path.read_text(encoding="utf-8"), path, begin, end)
    if block == fresh:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # never a half-written README
    tmp.write_text(before + fresh + after, encoding="utf-8")
    os.replace(tmp, path)
    return True


def block_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    what: str,
    begin: str,
    end: str,
    render: Callable[[], str],
    stale: str,
) -> int:
    """The command line every generated block shares: ``--write FILE``, ``--check FILE`` (exit 1
    with ``stale`` when the block differs from the code), or print the block. Exit 2 on a missing
    file or block."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", type=Path, help=f"regenerate FILE's {what} block")
    group.add_argument("--check", metavar="FILE", type=Path, help=f"exit 1 if FILE's {what} block is stale")
    args = parser.parse_args(argv)
    try:
        if args.write:
            changed = write_block(args.write, begin, end, render())
            print(f"{args.write}: {'updated' if changed else 'already up to date'}")
        elif args.check:
            if read_block(args.check, begin, end) != render():
                print(f"{args.check}: {stale}", file=sys.stderr)
                return 1
        else:
            print(render())
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def summary(doc: str | None) -> str:
    """A docstring's first paragraph as a table cell (reST ``code`` becomes `code`)."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return cell(paragraph.replace("``", "`"))


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, one line per row of already-escaped cells."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


@dataclass(frozen=True)
class DocBlock:
    """One generated block: its markers, what renders its body, and its ``python -m`` command line.

    A generating module declares one (``BLOCK = DocBlock("cli", "canvas_tui.cli_doc", ...)``) and
    exposes its methods, so every block is framed, read, rewritten and checked the same way: the
    markers ``<!-- KEY:begin -->`` / ``<!-- KEY:end -->``, then a comment naming ``source`` and the
    command that regenerates the block, a blank line, and ``body()``'s lines."""

    key: str
    module: str  # spelled out: under ``python -m`` the generator's ``__name__`` is "__main__"
    source: str
    body: Callable[[], list[str]]
    what: str
    stale: str  # the --check message; ``{regenerate}`` stands for the command
    description: str | None = None

    @property
    def begin(self) -> str:
        return f"<!-- {self.key}:begin -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.key}:end -->"

    @property
    def prog(self) -> str:
        return f"python -m {self.module}"

    @property
    def regenerate(self) -> str:
        """The command that rewrites the README's block."""
        return f"{self.prog} --write README.md"

    def render(self) -> str:
        """The whole generated block, markers included."""
        head = [self.begin, f"<!-- generated from {self.source} by `{self.regenerate}` -->", ""]
        return "\n".join([*head, *self.body(), self.end])

    def current(self, path: Path) -> str:
        """The block as the file holds it now."""
        return read_block(path, self.begin, self.end)

    def write(self, path: Path) -> bool:
        """Replace the file's block with the generated one; True when that changed the file."""
        return write_block(path, self.begin, self.end, self.render())

    def main(self, argv: list[str] | None = None) -> int:
        return block_main(
            argv,
            prog=self.prog,
            description=self.description,
            what=self.what,
            begin=self.begin,
            end=self.end,
            render=self.render,
            stale=self.stale.format(regenerate=self.regenerate),
        )
