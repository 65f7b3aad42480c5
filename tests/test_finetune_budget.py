"""Issue 16, "Honest time" for fine-tunes: by default validation takes at most ~10% of the training
time, and the log says how it was chosen; settings the user gave are kept. Also: ``canvas export
--merged`` prints our lines only (no transformers FutureWarning, no bitsandbytes kernel note).

A tiny fine-tune through the engine's own entry point (``run_finetune``, in process: it writes the
run's events and log as a detached engine would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config.finetune import load_finetune_config
from engine.finetune.eval_budget import plan_evaluation
from engine.finetune.launch import create_finetune_run
from engine.finetune.worker import run_finetune
from engine.locations import CACHE_ENV
from tests.finetune_fixtures import tiny_base, tiny_tokenizer
from tests.lifecycle_helpers import events

pytestmark = pytest.mark.slow  # two tiny fine-tunes (10 and 6 steps) and an export

REPO = Path(__file__).resolve().parents[1]
SETS = ["seq_len=128", "micro_batch=2", "lr=5e-3", "lora_r=4", "log_every=5", "lora_dropout=0"]
DATA = "embedded?limit=240"  # 12 conversations held out: 6 validation batches of 2


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, corpus_cache):
    root = tmp_path_factory.mktemp("budget-base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(corpus_cache))
        return tiny_base(root / "llama", tiny_tokenizer(root / "tok"))


def fine_tune(base_dir: Path, corpus_cache: Path, monkeypatch, *sets: str):
    monkeypatch.setenv(CACHE_ENV, str(corpus_cache))
    cfg = load_finetune_config(base=str(base_dir), data=DATA, sets=[*SETS, *sets])
    run = create_finetune_run(cfg)
    run_finetune(run, install_signals=False)
    assert run.read_meta().status == "finished", run.log_path.read_text()[-2000:]
    return run


def validation_lines(run) -> list[str]:
    return [e["message"] for e in events(run, "log") if e["message"].startswith("validation:")]


def test_by_default_validation_is_budgeted_and_the_log_says_how(
    base_dir, corpus_cache, monkeypatch, tmp_path
):
    run = fine_tune(base_dir, corpus_cache, monkeypatch, "max_steps=10")
    # 10 steps of 4 micro-batches: 10% is ~12 validation batches over the run (the pre-training
    # default, 20 batches at steps 0..10, would be ~18 times that); passes of 1 or 2 batches would
    # be noise, so it validates every 5 steps, 4 batches a pass
    assert validation_lines(run) == [
        "validation: 4 batches every 5 steps and at step 0 (~10% of the training time, estimated; "
        "chosen automatically: set eval_batches and eval_every to change)"
    ]
    assert [e["step"] for e in events(run, "eval")] == [0, 5, 10]
    assert plan_evaluation(10, 4, available=6).batches == 4  # what the log reported

    # `canvas export --merged`: our lines only
    merged = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "export", run.id, "--merged", str(tmp_path / "merged")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CANVAS_HOME": os.environ["CANVAS_HOME"]},
    )
    assert merged.returncode == 0, merged.stderr
    assert merged.stderr == ""  # no FutureWarning from transformers, no bitsandbytes kernel note
    assert merged.stdout.startswith("merged the adapter of step-000010 into its base -> ")


def test_settings_the_user_gave_are_kept(base_dir, corpus_cache, monkeypatch):
    run = fine_tune(base_dir, corpus_cache, monkeypatch, "max_steps=6", "eval_batches=5", "eval_every=3")
    assert validation_lines(run) == [
        "validation: 5 batches every 3 steps and at step 0, as set (~21% of the training time, estimated)"
    ]
    assert [e["step"] for e in events(run, "eval")] == [0, 3, 6]
