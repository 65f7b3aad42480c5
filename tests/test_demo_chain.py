"""The demo chain (engine.demo_chain) and `canvas demo --headless`: pre-train → fine-tune → eval →
answers, as real detached runs, resumable after the terminal goes away; the summary table's
numbers are what the runs recorded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import demo_chain
from engine.runs import RunKind, create_run
from engine.runs.store import list_runs, resolve_run
from tests.lifecycle_helpers import REPO, canvas

SMALLEST = [
    "--steps",
    "3",
    "--micro-batch",
    "2",
    "--seq-len",
    "32",
    "--finetune-steps",
    "2",
    "--eval-docs",
    "2",
    "--new-tokens",
    "4",
]


# ------------------------------------------------------------------------------ cheap: the state
def test_a_step_that_cannot_start_pauses_the_chain_and_resume_retries_it(canvas_home: Path):
    chain = demo_chain.new_chain(demo_chain.DemoSettings(steps=3), gpus=(0, "no GPU here"))
    assert (canvas_home / "demo.json").is_file() and chain.step == "pretrain"
    # Model 1 "finished" without a checkpoint (made by hand): the fine-tune's check refuses its base.
    model1 = create_run(RunKind.PRETRAIN, "m1", {"preset": "tiny"})
    model1.update_meta(status="finished")
    with demo_chain.edit() as chain:
        chain.steps["pretrain"].state, chain.steps["pretrain"].run = demo_chain.RUNNING, model1.id
        assert demo_chain.advance(chain) == f"finished {model1.id}: {demo_chain.TITLES['pretrain']}"
        line = demo_chain.advance(chain)
    chain = demo_chain.load_chain()
    assert chain is not None and chain.step == "finetune" and chain.paused
    assert chain.steps["pretrain"].state == "done"
    assert chain.steps["finetune"].state == "failed" and chain.steps["finetune"].run is None
    assert line == chain.message and line.startswith("finetune could not start: ") and "checkpoint" in line
    assert [r.id for r in list_runs()] == [model1.id]  # the refused fine-tune left no run behind
    # Resume: the step that never had a run is started afresh; skip moves past it.
    assert demo_chain.resume(driver=False) == "demo resumed at finetune"
    chain = demo_chain.load_chain()
    assert chain is not None and not chain.paused and chain.steps["finetune"].state == "pending"
    assert demo_chain.skip(driver=False) == f"skipping finetune: {demo_chain.TITLES['finetune']}"
    chain = demo_chain.load_chain()
    assert chain is not None and chain.step == "eval" and chain.steps["finetune"].state == "skipped"


def test_the_first_line_says_where_the_demo_trains(monkeypatch: pytest.MonkeyPatch):
    gpu = demo_chain.device_line((1, "1 GPU visible"))
    assert (
        gpu.startswith("GPU found (1 GPU visible): the demo trains on CUDA in bf16")
        and "torch.compile" in gpu
    )
    cpu = demo_chain.device_line((0, "this torch build is CPU-only"))
    assert cpu.startswith("No GPU: this torch build is CPU-only. The demo trains on the CPU")
    # The chain asks the same detection: a (faked) GPU makes Model 1 compile and the chain say so.
    monkeypatch.setattr("engine.preflight.visible_gpus", lambda: (2, "2 GPUs visible"))
    assert demo_chain.has_gpu() and demo_chain.device_line().startswith("GPU found (2 GPUs visible)")
    assert demo_chain.pretrain_config(demo_chain.DemoSettings(), gpu=True).compile == "true"
    assert demo_chain.pretrain_config(demo_chain.DemoSettings(), gpu=False).compile == "auto"
    chain = demo_chain.new_chain(demo_chain.DemoSettings())
    assert chain.device.startswith("GPU found (2 GPUs visible)")


def test_headless_refuses_bad_sizes_before_anything_exists(canvas_home: Path):
    out = canvas("demo", "--headless", "--finetune-steps", "0")
    assert out.returncode != 0 and "--finetune-steps 0" in out.stderr
    assert not (canvas_home / "demo.json").exists() and list_runs() == []
    out = canvas("demo", "--headless", "--out", "w")
    assert out.returncode != 0 and "--out goes with the foreground demo" in out.stderr
    out = canvas("demo", "--stop")
    assert out.returncode != 0 and "no demo has been started" in out.stderr
    assert not (canvas_home / "demo.json").exists() and list_runs() == []


# ------------------------------------------------------------------------------ slow: the whole chain
def _events(run, kind: str) -> list[dict]:
    records = [json.loads(x) for x in run.events_path.read_text().splitlines() if x.strip()]
    return [r for r in records if r["type"] == kind]


def _table(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 3:
            rows[parts[0]] = (parts[1], parts[2])
    return rows


def _num(cell: str) -> float:
    return float(cell.split(" ")[0].replace(",", ""))


@pytest.mark.slow
@pytest.mark.usefixtures("shared_cache")  # the corpus prepared once per session
def test_headless_demo_survives_its_terminal_and_reports_what_the_runs_recorded(canvas_home: Path):
    cmd = [sys.executable, "-m", "canvas_tui", "demo", "--headless", *SMALLEST]
    first = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, text=True)
    # The terminal goes away while Model 2 trains (the follower is killed, as by a closed window).
    deadline = time.monotonic() + 300
    while True:
        chain = demo_chain.load_chain()
        if chain is not None and chain.step != "pretrain":
            break
        assert first.poll() is None and time.monotonic() < deadline, "the chain never left pre-training"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    head = first.communicate()[0]
    assert head.splitlines()[0].startswith("No GPU: ")  # this machine: the CPU line first
    # Open it again: it picks the chain up where it is and runs it to the end.
    second = canvas("demo", "--headless", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.startswith("picking up the demo where it is: ")
    chain = demo_chain.load_chain()
    assert chain is not None and chain.finished
    assert [chain.steps[s].state for s in demo_chain.STEPS] == ["done"] * 4
    m1, m2, ev = (resolve_run(chain.steps[s].run) for s in ("pretrain", "finetune", "eval"))
    assert [m1.read_meta().kind, m2.read_meta().kind, ev.read_meta().kind] == ["pretrain", "finetune", "eval"]
    assert m2.read_meta().config["base"] == m1.id  # Model 2 is fine-tuned from Model 1
    assert sorted(r.id for r in list_runs()) == sorted([m1.id, m2.id, ev.id])  # no run started twice

    rows = _table(second.stdout)
    for col, run in ((0, m1), (1, m2)):
        info, metric = _events(run, "run_info")[-1], _events(run, "metric")[-1]
        assert _num(rows["parameters"][col]) == info["params"]
        assert _num(rows["tokens seen"][col]) == metric["tokens"]
        assert _num(rows["final training loss"][col]) == pytest.approx(metric["loss"], abs=1e-4)
        val = _events(run, "eval")[-1]["val_loss"]
        assert _num(rows["final validation loss"][col]) == pytest.approx(val, abs=1e-4)
        carbon = _events(run, "carbon")
        if carbon:
            assert _num(rows["energy, kWh"][col]) == pytest.approx(carbon[-1]["energy_kwh"], rel=1e-5)
            assert _num(rows["emissions, kg CO2eq"][col]) == pytest.approx(
                carbon[-1]["emissions_kg"], rel=1e-5
            )
    results = json.loads((ev.path / "results.json").read_text())
    by_run = {m["run_id"]: m["metrics"] for m in results["models"]}
    got1, got2 = by_run[m1.id], by_run[m2.id]
    assert _num(rows["perplexity (held-out)"][0]) == pytest.approx(got1["perplexity"]["value"], abs=1e-4)
    assert _num(rows["perplexity (held-out)"][1]) == pytest.approx(
        got2["reply_perplexity"]["value"], abs=1e-4
    )
    assert _num(rows["bits per byte"][0]) == pytest.approx(got1["bits_per_byte"]["value"], abs=1e-4)
    for label, key in (("ROUGE-L", "rougeL"), ("BLEU", "bleu"), ("chrF", "chrf")):
        assert _num(rows[label][0]) == pytest.approx(got1[key]["value"], abs=1e-4)
        assert _num(rows[label][1]) == pytest.approx(got2[key]["value"], abs=1e-4)
    # The answers are each model's greedy reply through the inference worker, as a new worker gives it.
    expected = demo_chain.answer(m2.id, demo_chain.QUESTION, 4, "auto", canvas_home / "check.log")
    assert f"Model 2 (greedy): {expected!r}" in second.stdout
    assert chain.answers["model2"] == expected and "model1" in chain.answers
