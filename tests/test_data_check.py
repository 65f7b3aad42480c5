"""Issue 16: data is read before it is trusted. ``canvas data check`` reads what it checks (``--quick``
only the spec); a binary or mostly-invalid "text" file is refused, naming the share, unless the
source says ``errors=replace``; ``canvas train --data`` refuses a broken JSON line or a missing
column before a run exists, with the same check and message ``canvas finetune`` and ``data check``
give. Every test drives the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_input_checks import canvas, header_only_base, runs_in_store

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def broken_jsonl(path: Path) -> Path:
    path.write_text('{"text": "one"}\n{"text": "two"}\n{"text": broken\n{"text": "four"}\n')
    return path


def binary_as_text(path: Path) -> Path:
    """A renamed executable: NUL bytes and invalid UTF-8."""
    path.write_bytes(bytes(range(256)) * 40 + b"\x7fELF\x00\x00\x00" * 100)
    return path


def latin1_chat(path: Path) -> Path:
    """Chat data saved as Latin-1: about a tenth of its bytes are invalid UTF-8."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Caf\u00e9 cr\u00e8me \u00e0 \u00e9t\u00e9?"},
                {"role": "assistant", "content": "D\u00e9j\u00e0 l\u00e0, tr\u00e8s \u00e9l\u00e9gant."},
            ]
        }
    ] * 4
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1"))
    return path


def test_data_check_reads_every_line_the_column_and_the_bytes(tmp_path: Path) -> None:
    broken_jsonl(tmp_path / "broken.jsonl")
    (tmp_path / "other.jsonl").write_text('{"body": "a"}\n{"body": "b"}\n')
    binary_as_text(tmp_path / "prog.txt")
    (tmp_path / "good.jsonl").write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": "c"}\n')

    broken = cli("data", "check", "--data", "broken.jsonl", cwd=tmp_path)
    assert broken.returncode == 2 and broken.stdout == ""
    assert "broken.jsonl line 3 is not JSON" in broken.stderr and "'{\"text\": broken'" in broken.stderr

    missing = cli("data", "check", "--data", "other.jsonl", cwd=tmp_path)
    assert missing.returncode == 2
    assert "other.jsonl has no column 'text' in any row; the columns are body" in missing.stderr
    assert "`other.jsonl#body`" in missing.stderr  # the fix, which works:
    assert cli("data", "check", "--data", "other.jsonl#body", cwd=tmp_path).returncode == 0

    binary = cli("data", "check", "--data", "prog.txt", cwd=tmp_path)
    assert binary.returncode == 2 and "prog.txt holds 340 NUL byte(s)" in binary.stderr

    good = cli("data", "check", "--data", "good.jsonl", cwd=tmp_path)
    assert good.returncode == 0 and good.stdout.startswith("ok: good.jsonl")
    assert "good.jsonl: 43 bytes, 3 rows" in good.stdout

    quick = cli("data", "check", "--quick", "--data", "broken.jsonl", cwd=tmp_path)
    assert quick.returncode == 0 and quick.stdout.startswith("ok (spec only, files not read): broken.jsonl")


def test_a_binary_file_given_as_text_is_refused_by_every_command_and_accepted_when_asked(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    binary_as_text(tmp_path / "prog.txt")
    code, out, err = canvas(capsys, "train", "--data", "prog.txt", "--detach")
    assert (code, out) == (2, "") and runs_in_store() == []
    assert "prog.txt holds 340 NUL byte(s) (first at byte 0)" in err and "invalid UTF-8" in err
    assert "add `?errors=replace` to the source" in err
    code, out, err = canvas(capsys, "train", "--data", "prog.txt?errors=replace", "--dry-run")
    assert code == 0 and json.loads(out)["data"] == "prog.txt?errors=replace"

    # fine-tuning data: the same rule, the same option, before a run exists
    latin1_chat(tmp_path / "chats.jsonl")
    base = header_only_base(tmp_path / "base")
    args = ("finetune", "--base", str(base), "--set", "seq_len=64")
    code, out, err = canvas(capsys, *args, "--data", "chats.jsonl", "--detach")
    assert (code, out) == (2, "") and runs_in_store() == []
    assert "chats.jsonl has 44 invalid UTF-8 bytes, 8.8% of 500" in err and "more than 2%" in err
    assert "`?errors=replace`" in err
    code, out, err = canvas(capsys, *args, "--data", "chats.jsonl?errors=replace", "--dry-run")
    assert code == 0, err


def test_train_refuses_a_broken_json_line_or_a_missing_column_before_a_run_exists(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broken_jsonl(tmp_path / "broken.jsonl")
    code, out, err = canvas(capsys, "train", "--data", "broken.jsonl", "--set", "max_steps=1", "--detach")
    assert (code, out) == (2, "") and runs_in_store() == []
    assert "broken.jsonl line 3 is not JSON" in err
    (tmp_path / "other.jsonl").write_text('{"body": "a"}\n')
    code, out, err = canvas(capsys, "train", "--data", "other.jsonl", "--detach")
    assert (code, out) == (2, "") and runs_in_store() == []
    assert "has no column 'text' in any row; the columns are body" in err


def test_prepare_prints_our_message_only(tmp_path: Path) -> None:
    """pyarrow's own "JSON parse error … row 2" used to come before our "line 3" message."""
    broken_jsonl(tmp_path / "broken.jsonl")
    result = cli("data", "prepare", "--data", "broken.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("check ") and len(lines) == 2  # the progress line, then our message only
    assert lines[1].startswith("canvas: error: data source 'broken.jsonl': broken.jsonl line 3 is not JSON")
    assert "JSON parse error" not in result.stderr and "row" not in result.stderr
