"""The README's generated references (command line, run config) match the code they come from.

When a test here fails because a flag or a key was added, regenerate the blocks (both are cheap,
torch-free, and leave the rest of the README alone):

    .venv/bin/python -m canvas_tui.cli_doc --write README.md
    .venv/bin/python -m engine.config_doc --write README.md

and, for a new config key, first add its meaning to ``engine/config/docs.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from canvas_tui import cli_doc
from engine import config_doc

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_cli_reference_is_current():
    assert cli_doc.current_block(README) == cli_doc.render(), (
        f"README.md's command-line reference is stale: run `{cli_doc.REGENERATE}`"
    )


def test_config_reference_is_current():
    assert config_doc.current_block(README) == config_doc.render(), (
        f"README.md's run config reference is stale: run `{config_doc.REGENERATE}`"
    )


def test_every_config_key_has_a_meaning():
    assert config_doc.missing_meanings() == [], "add these keys' meanings to engine/config/docs.py"


def test_cli_reference_rows_come_from_the_parser():
    """Every command is there, with each argument's flag, default and help as the parser has them."""
    from canvas_tui.cli import build_parser

    block = cli_doc.render()
    paths = [path for path, _, _ in cli_doc.commands(build_parser())]
    assert {"canvas train", "canvas data prepare", "canvas logs", "canvas arena"} <= set(paths)
    for path in paths:
        assert f"**`{path}`**" in block
    assert "| `--nproc N` | `1` | processes (GPUs) for distributed data parallel training" in block
    assert "| `--checkpoint best\\|last\\|STEP` | `best` | which checkpoint of the run" in block


def test_config_reference_rows_come_from_the_dataclasses():
    block = config_doc.render()
    assert "| `lr` | number | `0.002` | `0.0002` | peak learning rate" in block  # tiny preset vs QLoRA
    assert "| `lora_r` | whole number | — | `16` |" in block  # fine-tune only
    assert "| `model.n_kv_heads` | whole number | `0` | `4` | `4` | `8` |" in block  # default, then presets


def test_check_flags_a_stale_block_and_write_repairs_it(tmp_path):
    stale = tmp_path / "README.md"
    shutil.copy(README, stale)
    text = stale.read_text(encoding="utf-8")
    stale.write_text(text.replace("| `--nproc N` | `1` |", "| `--nproc N` | `2` |"), encoding="utf-8")
    for module in ("canvas_tui.cli_doc", "engine.config_doc"):
        check = subprocess.run(
            [sys.executable, "-m", module, "--check", str(stale)], capture_output=True, text=True, cwd=REPO
        )
        if module == "canvas_tui.cli_doc":
            assert check.returncode == 1
            assert f"regenerate it with `{cli_doc.REGENERATE}`" in check.stderr
        else:
            assert check.returncode == 0, check.stderr
    write = subprocess.run(
        [sys.executable, "-m", "canvas_tui.cli_doc", "--write", str(stale)], capture_output=True, text=True
    )
    assert write.returncode == 0 and "updated" in write.stdout
    assert stale.read_text(encoding="utf-8") == text


def test_generated_blocks_share_one_frame_and_one_table_writer():
    """The four generators frame their blocks and draw their tables with engine.docblock's helpers."""
    from engine import docblock
    from engine.runs import schema_doc
    from engine.serve import protocol_doc

    for module in (cli_doc, config_doc, protocol_doc, schema_doc):
        block, lines = module.BLOCK, module.render().splitlines()
        command = f"python -m {block.module} --write README.md"
        assert command == module.REGENERATE
        assert lines[:3] == [block.begin, f"<!-- generated from {block.source} by `{command}` -->", ""]
        assert (block.begin, lines[-1]) == (f"<!-- {block.key}:begin -->", f"<!-- {block.key}:end -->")
    rows = [[docblock.cell("x |\n  y"), ""]]
    assert docblock.table(["a", "b"], rows) == ["| a | b |", "|---|---|", "| x \\| y |  |"]
    assert docblock.summary("Uses ``x``\n  here.\n\nMore.") == "Uses `x` here."
