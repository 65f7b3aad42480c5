"""Issue 16, "Honest time": ``canvas train`` in the foreground shows the data preparation, then
progress from the first step with an ETA (not only every ``log_every`` steps), and between metric
events the steps the engine reports. The real CLI on a tiny run over a small local file."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from canvas_tui.commands.train import ProgressView
from engine.runs.events import Metric, Progress, RunInfo

REPO = Path(__file__).resolve().parents[1]
TINY = [
    *("--set", "vocab_size=300", "--set", "max_steps=12", "--set", "log_every=10"),
    *("--set", "micro_batch=2", "--set", "seq_len=32", "--set", "model.max_seq_len=32"),
    *("--set", "model.n_layers=1", "--set", "model.dim=32", "--set", "model.n_heads=2"),
    *("--set", "model.n_kv_heads=1", "--set", "eval_batches=1", "--set", "eval_every=100"),
]


@pytest.mark.slow  # a real tiny run with its own data preparation: ~12 s on a loaded machine
def test_a_foreground_run_shows_data_preparation_then_every_step_from_the_first(tmp_path: Path) -> None:
    import pydoc_data.topics

    (tmp_path / "small.txt").write_text("\n\n".join(list(pydoc_data.topics.topics.values())[:40]))
    result = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "train", "--data", "small.txt", *TINY],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    run_line = next(i for i, line in enumerate(lines) if line.startswith("run: "))
    data = [line for line in lines[:run_line] if line.startswith("data: ")]
    assert data[0] == "data: check…" and data[-1].startswith("data: done: ") and len(data) >= 3
    steps = [line for line in lines if line.startswith("step ")]
    # the first step is shown as soon as it is done, with an ETA, though log_every is 10
    assert re.match(r"step 1/12 \[#+\.+\] loss \d+\.\d{4}  [\d,]+ tok/s  ETA \d", steps[0]), steps
    assert [s.split()[1] for s in steps] == ["1/12", "10/12", "12/12"]
    assert lines[-1].endswith("finished")


def test_steps_between_metric_events_move_the_progress_line() -> None:
    """A step every few seconds with log_every=10: the engine's ``training`` progress events (steps,
    rate, ETA) move the foreground line between metric events."""
    out = io.StringIO()
    view = ProgressView(out)
    view.handle(RunInfo(total_steps=100))
    view.handle(Metric(step=1, loss=5.5, tokens_per_s=800.0, step_time=3.0))
    view.handle(Progress(phase="training", done=4, total=100, unit="steps", rate=0.33, eta=290.0))
    view.handle(Progress(phase="training: done", done=4, total=100, unit="steps"))
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("step 1/100 ") and "ETA 4m57s" in lines[1]
    assert lines[2].startswith("step 4/100 ") and "loss 5.5000" in lines[2] and "ETA 4m50s" in lines[2]
    assert len(lines) == 3  # the closing event draws nothing
