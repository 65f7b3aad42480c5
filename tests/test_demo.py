"""The main job until the console lands: `canvas` trains the tiny model on the embedded text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the demo trains for real, in process and through the CLI

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.usefixtures("shared_cache")  # the corpus prepared once per session
def test_demo_learns_and_saves_an_exportable_model(tmp_path):
    from engine.demo import run_demo

    lines: list[str] = []
    result = run_demo(40, micro_batch=4, seq_len=64, log_every=20, out=tmp_path / "w", echo=lines.append)
    first, last = result.losses[0], sum(result.losses[-5:]) / 5
    assert first > 8.0  # ~ln(4096) = 8.3 at initialisation
    assert last < first - 1.5  # it learned something in 40 steps
    assert result.sample.startswith("The ") and len(result.sample) > 4
    assert any(line.startswith("step    40/40") for line in lines)
    assert (tmp_path / "w" / "model.safetensors").is_file()
    assert (tmp_path / "w" / "tokenizer.json").is_file()
    # The demo is a real pre-training run in the store, trained by the real loop: its metric
    # events are the losses the demo reported, one a step, and it finished with a checkpoint.
    from engine.runs.store import list_runs

    assert [r.path for r in list_runs()] == [result.run.path]
    meta = result.run.read_meta()
    assert (meta.kind, meta.status, meta.total_steps) == ("pretrain", "finished", 40)
    events = [json.loads(line) for line in result.run.events_path.read_text().splitlines()]
    metrics = [e for e in events if e["type"] == "metric"]
    assert [m["step"] for m in metrics] == list(range(1, 41))
    assert [m["loss"] for m in metrics] == result.losses
    assert [e["val_loss"] for e in events if e["type"] == "eval"] == [result.val_loss]
    assert json.loads((result.run.checkpoints_dir / "last.json").read_text())["step"] == 40


def test_canvas_demo_through_the_cli(tmp_path, prepared_cache):
    # A home whose cache already holds the session's prepared corpus (the tokenizing is the test
    # above's and the fixture's business): the demo must find it there, under CANVAS_HOME.
    shutil.copytree(prepared_cache, tmp_path / "cache")
    env = {**os.environ, "CANVAS_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "demo", "--steps", "3", "--micro-batch", "2", "--seq-len", "32"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "step     3/3" in proc.stdout and "sample: The " in proc.stdout
    assert f"(cached): {tmp_path / 'cache' / 'data'}" in proc.stdout  # read from under CANVAS_HOME
