"""Every command the README shows is checked, so the README cannot rot.

The convention, by the info string of a fenced code block (README.md and docs/*.md):

- ```` ```bash ````: run, each command, in a fresh temporary ``CANVAS_HOME``, offline, with cheap
  substitutions: ``canvas train`` / ``canvas finetune`` get ``--dry-run`` instead of ``--detach``
  (the whole check-and-start runs, no training); ``bash .ci/X`` is syntax-checked (``bash -n``:
  running the quick start is the by-hand check in the issue note); ``python -m MODULE --write
  README.md`` runs as ``--check``; ``.venv/bin/python bench/X.py`` / ``docs/X.py`` must exist
  (``tests/test_bench.py`` and ``tests/test_readme_screenshot.py`` run them); ``export NAME=VALUE``
  must name a variable the code (or a library it documents) reads. Anything else fails: put a
  command that needs a GPU, the network or an existing run in an ``sh`` block instead.
- ```` ```sh ````: every ``canvas`` command is parsed by the real argument parser, so a renamed
  command or flag fails; other programs (``curl``, ``hf``) are shown as they are.
- ```` ```csh ````: ``setenv NAME VALUE`` lines, the same settings as the ``bash`` block before it.
- everywhere else (inline code, tables, indented synopses): each ``--flag`` of a ``canvas …`` span
  must be an option of that command.

Also: the presets table matches ``canvas info --presets``, and each message quoted in a ``text``
block of docs/TRAINING.md (``…`` for a value) is a string the code builds.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
GUIDE = REPO / "docs" / "TRAINING.md"
DOCS = (README, GUIDE)

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
#: Environment variables read by libraries we document (the rest must appear in our own code).
LIBRARY_ENV = {
    "HF_HOME",
    "HF_TOKEN",
    "CUDA_VISIBLE_DEVICES",
    "NO_COLOR",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
}
SEPARATORS = {"&&", "||", "|", ";", "&"}


def blocks(path: Path, kind: str | None = None) -> list[tuple[str, str, int]]:
    """(kind, text, line number) of each fenced block of ``path``."""
    text = path.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        if kind is None or m.group(1) == kind:
            found.append((m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1))
    return found


def commands(block: str) -> list[list[str]]:
    """The simple commands of a shell block: continuations joined, comments dropped, split at
    ``&&``, ``|``, ``;``."""
    out: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token in SEPARATORS:
                out.append(current)
                current = []
            else:
                current.append(token)
        out.append(current)
    return [c for c in out if c]


def canvas_argv(cmd: list[str]) -> list[str] | None:
    """The arguments after ``canvas`` (or ``.venv/bin/canvas``), or None for another program."""
    if cmd and cmd[0] in ("canvas", ".venv/bin/canvas"):
        return cmd[1:]
    return None


def parse(argv: list[str], where: str) -> argparse.Namespace:
    from canvas_tui.cli import build_parser

    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `canvas {shlex.join(argv)}` is refused by the parser (exit {exc.code})")


def shown_commands(kind: str) -> list[tuple[str, list[str]]]:
    return [
        (f"{path.name}:{line}", cmd)
        for path in DOCS
        for _, text, line in blocks(path, kind)
        for cmd in commands(text)
    ]


# ----------------------------------------------------------------------------------- parsing


def test_every_canvas_command_in_a_code_block_parses():
    """``bash`` and ``sh`` blocks alike: the real parser accepts each ``canvas`` command."""
    checked = 0
    for kind in ("bash", "sh"):
        for where, cmd in shown_commands(kind):
            argv = canvas_argv(cmd)
            if argv is not None:
                parse(argv, where)
                checked += 1
    assert checked >= 30  # the README shows that many (a broken extraction would check none)


def test_the_parser_check_catches_a_renamed_flag(capsys):
    with pytest.raises(pytest.fail.Exception, match="--epochz"):
        parse(["train", "--epochz", "3"], "README.md:1")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return dict(sub.choices) if sub else {}


def _flags_in_text() -> list[tuple[str, str]]:
    """Every inline ``canvas …`` span outside fenced blocks, and every line of an indented block
    that starts with ``canvas``."""
    spans = []
    for path in DOCS:
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        spans += [(path.name, s) for s in re.findall(r"`(canvas [^`]+)`", text)]
        spans += [(path.name, s) for s in re.findall(r"^ {4}(canvas .+)$", text, re.M)]
    return spans


def test_every_flag_quoted_in_the_text_exists():
    from canvas_tui.cli import build_parser

    root = build_parser()
    global_flags = {o for a in root._actions for o in a.option_strings}
    checked = 0
    for where, span in _flags_in_text():
        parser, words = root, span.split()[1:]
        for word in words:  # walk down the sub-commands the span names
            children = _options(parser)
            if word in children:
                parser = children[word]
            elif not word.startswith("-"):
                continue
        known = global_flags | {o for a in parser._actions for o in a.option_strings}
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span):
            assert flag in known, f"{where}: `{span}` names {flag}, which `{parser.prog}` does not have"
            checked += 1
    assert checked >= 40


# --------------------------------------------------------------------------------- environment


def _read_by_our_code() -> str:
    parts = []
    for folder in ("engine", "canvas_tui", ".ci", "bench"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and (path.suffix == ".py" or folder == ".ci"):
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def _exports(text: str) -> list[tuple[str, str]]:
    return [
        tuple(cmd[1].split("=", 1))  # type: ignore[misc]
        for cmd in commands(text)
        if cmd[0] == "export"
    ]


def test_every_environment_setting_is_read_and_shown_for_csh_too():
    code = _read_by_our_code()
    pairs = 0
    for path in DOCS:
        fenced = blocks(path)
        for i, (kind, text, line) in enumerate(fenced):
            exports = _exports(text) if kind == "bash" else []
            for name, _ in exports:
                assert name in LIBRARY_ENV or f'"{name}"' in code or f"{name}=" in code, (
                    f"{path.name}:{line}: {name} is read by nothing in engine/, canvas_tui/, .ci/ or bench/"
                )
            if exports:
                nxt = fenced[i + 1] if i + 1 < len(fenced) else ("", "", 0)
                assert nxt[0] == "csh", f"{path.name}:{line}: bash settings without the csh block after them"
                setenvs = [tuple(c[1:3]) for c in commands(nxt[1]) if c[0] == "setenv"]
                assert setenvs == exports, f"{path.name}:{nxt[2]}: the csh block differs from the bash one"
                pairs += 1
    assert pairs >= 3  # README: the large disk and the full list; TRAINING.md: the large disk


# ------------------------------------------------------------------------------------ running


#: ``canvas`` commands a bash block may show, run as they are (train and finetune: as --dry-run).
RUNNABLE = {"info", "data", "runs", "train", "finetune", "--help", "--version"}
#: Commands run elsewhere by their own tests; a bash block's copy is parsed only.
RUN_ELSEWHERE = {"demo": "tests/test_demo.py"}


def _run_canvas(argv: list[str], home: Path, where: str) -> str:
    sub = argv[0] if argv else ""
    assert sub in RUNNABLE, (
        f"{where}: `canvas {shlex.join(argv)}` opens the console or needs a run, a GPU or the network: "
        "show it in an sh block (parsed, not run)"
    )
    if sub in ("train", "finetune"):
        argv = [a for a in argv if a != "--detach"]
        if "--dry-run" not in argv:
            argv.append("--dry-run")
    env = {
        **os.environ,
        "CANVAS_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }
    env.pop("CANVAS_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-m", "canvas_tui", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=120,
    )
    assert done.returncode == 0, f"{where}: `canvas {shlex.join(argv)}` failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _run_other(cmd: list[str], where: str) -> None:
    program = cmd[0]
    if program == "bash":
        check = subprocess.run(["bash", "-n", cmd[1]], cwd=REPO, capture_output=True, text=True)
        assert check.returncode == 0, f"{where}: {cmd[1]}: {check.stderr}"
    elif program == "export":
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", cmd[1]), f"{where}: {shlex.join(cmd)}"
    elif program in ("python", ".venv/bin/python") and cmd[1:2] == ["-m"]:
        args = ["--check" if a == "--write" else a for a in cmd[3:]]
        done = subprocess.run([sys.executable, "-m", cmd[2], *args], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, f"{where}: {shlex.join(cmd)}: {done.stderr}"
    elif program in ("python", ".venv/bin/python"):  # bench/ and docs/ scripts: their own tests run them
        assert (REPO / cmd[1]).is_file(), f"{where}: {cmd[1]} does not exist"
    else:
        pytest.fail(f"{where}: `{shlex.join(cmd)}` is not something a bash block may run; use an sh block")


def test_every_command_in_a_bash_block_runs(tmp_path):
    """About 4 s on a busy 2-core machine: five ``canvas`` processes, three of them ``--dry-run``."""
    ran = []
    for where, cmd in shown_commands("bash"):
        argv = canvas_argv(cmd)
        if argv is None:
            _run_other(cmd, where)
        else:
            parse(argv, where)
            if argv and argv[0] in RUN_ELSEWHERE:
                continue
            home = tmp_path / f"home{len(ran)}"
            home.mkdir()
            _run_canvas(argv, home, where)
            ran.append(shlex.join(argv))
    assert any(a.startswith("train --preset seed-base") for a in ran)
    assert "data check --data owt+c4" in ran


# ------------------------------------------------------------------------------ quoted figures


def test_presets_table_is_what_canvas_info_prints(tmp_path):
    out = _run_canvas(["info", "--presets"], tmp_path, "README.md presets")
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w-]+)` \| ([\d,]+) \| .*\| ([\d.]+ [MG]iB) at batch (\d+) \|$", text, re.M)
    assert {name for name, *_ in rows} == {"tiny", "seed-base", "seed-1b"}
    for name, params, memory, batch in rows:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert line.split()[1] == params, f"README says {name} has {params} parameters; canvas info: {line}"
        assert f"{memory} @ batch {batch}" in line
    assert "**200,827,904 (200.8M)**" in text and "1.2B parameters: **that is wrong**" in text


def _templates() -> list[str]:
    """Every string literal of engine/ and canvas_tui/, an f-string's values as NUL."""
    found = []
    for folder in ("engine", "canvas_tui"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.JoinedStr):
                    found.append(
                        "".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values)
                    )
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.append(node.value)
    return found


def test_messages_quoted_in_the_guide_are_printed_by_the_code():
    templates = _templates()
    quoted = [
        (line, message.strip())
        for _, text, line in blocks(GUIDE, "text")
        for message in text.splitlines()
        if message.strip()
    ]
    assert len(quoted) >= 12
    for line, message in quoted:
        pattern = re.compile(".*?".join(re.escape(part) for part in message.split("…")), re.S)
        assert any(pattern.fullmatch(t) for t in templates), (
            f"docs/TRAINING.md:{line}: no string in engine/ or canvas_tui/ builds {message!r}"
        )
