"""Real tiny training runs through the CLI: exact resume after kill -9, signals, tmux, export.

All tests here share one CANVAS_HOME so the embedded corpus is tokenized once (the data cache
is part of what a second run reuses); each run has its own directory in it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runs import control
from engine.runs.events import Metric
from engine.runs.heartbeat import read_heartbeat
from engine.runs.status import run_status
from engine.runs.store import RunDir, resolve_run
from tests.helpers import in_tmux_then_kill_it, wait_until
from tests.lifecycle_helpers import REPO, canvas, events, finish, last_step, typed_events

# Small and quick on 2 CPU cores: the tiny preset at 4 x 64 tokens a step, an event every step.
pytestmark = pytest.mark.slow  # real training runs through the CLI, killed and resumed

FAST = ["--set", "micro_batch=4", "--set", "seq_len=64", "--set", "log_every=1", "--set", "eval_batches=2"]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train-home")


@pytest.fixture(autouse=True)
def canvas_home(shared_home: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CANVAS_HOME", str(shared_home))
    return shared_home


def start(*sets: str, name: str) -> RunDir:
    out = canvas("train", *FAST, *sets, "--name", name, "--detach")
    assert out.returncode == 0, out.stderr
    return resolve_run(out.stdout.split()[0])


def losses_by_step(run: RunDir) -> dict[int, float]:
    """The loss of each step; a step redone after a crash keeps its last value."""
    return {r["step"]: r["loss"] for r in events(run, "metric")}


def test_foreground_train_shows_progress_and_finishes(tmp_path):
    out = canvas(
        "train",
        *FAST,
        "--set",
        "max_steps=12",
        "--set",
        "eval_every=6",
        "--set",
        "warmup_steps=4",
        "--name",
        "fg",
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.splitlines()[0]
    assert "step 12/12" in out.stdout and "validation loss" in out.stdout
    assert out.stdout.rstrip().endswith(f"run {run_id} finished")
    run = resolve_run(run_id)
    info = events(run, "run_info")[0]
    assert info["total_steps"] == 12 and info["tokens_per_step"] == 4 * 64
    assert info["precision"] in ("bf16", "fp32") and info["precision_reason"]
    metrics = events(run, "metric")
    assert [m["step"] for m in metrics] == list(range(1, 13))
    assert metrics[-1]["tokens"] == 12 * 256
    beat = read_heartbeat(run.path)  # the trainer's heartbeat (engine.runs.heartbeat), last beat at the end
    assert beat is not None and (beat.step, beat.pid) == (12, run.read_meta().pid) and beat.gap_s is not None
    assert [m["lr"] for m in metrics[:4]] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3])  # warm-up
    cosine = [2e-4 + 1.8e-3 * 0.5 * (1 + math.cos(math.pi * (i - 4) / 8)) for i in range(4, 12)]
    assert [m["lr"] for m in metrics[4:]] == pytest.approx(cosine)  # to min_lr_ratio * lr at the end
    assert all(m["tokens_per_s"] > 0 and m["grad_norm"] > 0 for m in metrics)
    evals = events(run, "eval")
    assert [e["step"] for e in evals] == [6, 12]
    best = json.loads((run.checkpoints_dir / "best.json").read_text())
    assert best["val_loss"] == min(e["val_loss"] for e in evals)
    assert json.loads((run.checkpoints_dir / "last.json").read_text())["step"] == 12
    # The run is exportable to transformers by its id, tokenizer included.
    export = canvas("export", run_id[:-2], "--hf", str(tmp_path / "hf"))
    assert export.returncode == 0, export.stderr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "hf")).__name__ == "LlamaForCausalLM"
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.eos_token == "<|eos|>"
    # TensorBoard got the same numbers as the event log.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.path / "tb"))
    acc.Reload()
    tb_loss = [s.value for s in acc.Scalars("train/loss")]
    assert tb_loss == pytest.approx([m.loss for m in typed_events(run, Metric)], rel=1e-6)


def test_kill_9_then_resume_gives_the_same_losses_and_weights():
    """The issue's exact-resume test: bit-identical per-step losses and final weights on CPU."""
    sets = [
        "--set",
        "max_steps=40",
        "--set",
        "checkpoint_every=10",
        "--set",
        "eval_every=20",
        "--set",
        "keep_checkpoints=10",
    ]
    straight = start(*sets, name="straight")
    assert finish(straight).state == "finished"

    broken = start(*sets, name="broken")
    wait_until(lambda: any(c["step"] >= 10 for c in events(broken, "checkpoint")), what="a checkpoint")
    checkpointed = max(c["step"] for c in events(broken, "checkpoint"))
    wait_until(lambda: last_step(broken) >= checkpointed + 2, what="two steps past the checkpoint")
    pid = broken.read_meta().pid
    os.kill(pid, signal.SIGKILL)
    crashed = finish(broken)
    assert crashed.state == "crashed", crashed
    killed_at = last_step(broken)
    assert killed_at < 40, "the run finished before it was killed"
    before_kill = losses_by_step(broken)

    out = canvas("resume", broken.id)
    assert out.returncode == 0, out.stderr
    assert finish(broken).state == "finished"
    resumed_info = events(broken, "run_info")[-1]
    last_ckpt = resumed_info["resumed_from"]
    assert checkpointed <= last_ckpt <= killed_at

    expected, got = losses_by_step(straight), losses_by_step(broken)
    assert sorted(got) == list(range(1, 41))
    assert got == expected  # bit-identical floats, not approximately equal
    redone = range(last_ckpt + 1, killed_at + 1)
    assert [before_kill[s] for s in redone] == [expected[s] for s in redone]
    assert [e["val_loss"] for e in events(broken, "eval")][-1] == events(straight, "eval")[-1]["val_loss"]
    final_a = (straight.checkpoints_dir / "step-000040" / "model.safetensors").read_bytes()
    final_b = (broken.checkpoints_dir / "step-000040" / "model.safetensors").read_bytes()
    assert final_a == final_b
    # TensorBoard dropped the redone steps' first values and kept the checkpointed step's.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(broken.path / "tb"))
    acc.Reload()
    tb = {s.step: s.value for s in acc.Scalars("train/loss")}
    assert tb == pytest.approx(expected, rel=1e-6)


def test_checkpoint_now_then_stop_then_resume():
    run = start("--set", "max_steps=400", "--set", "eval_every=1000", name="steered")
    wait_until(lambda: last_step(run) >= 3, what="three steps")
    os.kill(run.read_meta().pid, signal.SIGHUP)  # ignored: a closing terminal must not matter
    out = canvas("checkpoint", "steered")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: events(run, "checkpoint"), what="the requested checkpoint")
    first = events(run, "checkpoint")[0]["step"]
    assert run_status(run).state == "running"

    out = canvas("stop", "steered", "--wait")
    assert out.returncode == 0, out.stderr
    assert run_status(run).state == "stopped"
    stopped_at = last_step(run)
    assert first <= stopped_at < 400
    assert json.loads((run.checkpoints_dir / "last.json").read_text())["step"] == stopped_at

    out = canvas("resume", "steered")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: last_step(run) > stopped_at, what="the resumed run to step")
    assert events(run, "run_info")[-1]["resumed_from"] == stopped_at
    assert control.stop_run(run, wait=True, timeout=60).state == "stopped"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_training_started_in_tmux_survives_killing_the_tmux_server(tmp_path):
    steps = 60
    cmd = [
        sys.executable,
        "-m",
        "canvas_tui",
        "train",
        *FAST,
        "--set",
        f"max_steps={steps}",
        "--set",
        "eval_every=30",
        "--name",
        "in-tmux",
    ]

    def ready():
        run = next(iter(_runs_named("in-tmux")), None)
        return run if run is not None and last_step(run) >= 3 else None

    run = in_tmux_then_kill_it(cmd, tmp_path, ready, REPO)
    assert last_step(run) < steps, "the run ended before the terminal was killed"
    assert run_status(run).state == "running"
    assert finish(run).state == "finished"
    assert sorted(losses_by_step(run)) == list(range(1, steps + 1))
    assert [e["state"] for e in events(run, "status")] == ["running", "finished"]


def _runs_named(name: str) -> list[RunDir]:
    from engine.runs.store import list_runs

    return [r for r in list_runs() if r.read_meta().name == name]


def test_ctrl_c_in_the_foreground_stops_gracefully_with_a_checkpoint():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canvas_tui",
            "train",
            *FAST,
            "--set",
            "max_steps=400",
            "--set",
            "eval_every=1000",
            "--name",
            "ctrl-c",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        # A foreground process in a terminal gets SIGINT; a test started from a
        # background job inherits it ignored (bash does that), so restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    run = resolve_run(proc.stdout.readline().strip())
    wait_until(lambda: last_step(run) >= 3, what="three steps")
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopping run" in err and f"run {run.id} stopped" in out
    assert f"canvas resume {run.id}" in out
    stopped_at = last_step(run)
    assert json.loads((run.checkpoints_dir / "last.json").read_text())["step"] == stopped_at < 400
