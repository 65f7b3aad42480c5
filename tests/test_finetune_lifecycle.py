"""Real fine-tune runs through the CLI, as detached engine processes: exact resume after kill -9,
SIGUSR1, graceful stop, and the embedded default end to end (a scratch run of ours as the base,
the embedded conversations as data, then a merged export that transformers loads)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.runs.events import Metric
from engine.runs.store import RunDir, list_runs, resolve_run
from tests.finetune_fixtures import tiny_base, tiny_tokenizer
from tests.helpers import wait_until
from tests.lifecycle_helpers import canvas, events, finish, last_step, typed_events

pytestmark = pytest.mark.slow  # real QLoRA fine-tunes through the CLI, killed and resumed

FAST = [
    "--set",
    "seq_len=96",
    "--set",
    "micro_batch=2",
    "--set",
    "grad_accum=2",
    "--set",
    "log_every=1",
    "--set",
    "eval_batches=2",
    "--set",
    "lora_r=4",
    "--set",
    "lr=5e-3",
]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("finetune-home")


@pytest.fixture(autouse=True)
def canvas_home(shared_home: Path, corpus_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CANVAS_HOME", str(shared_home))
    monkeypatch.setenv("CANVAS_CACHE", str(corpus_cache))  # the embedded corpus, extracted once per session
    return shared_home


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle-base")
    return tiny_base(root / "llama", tiny_tokenizer(root / "tok"))


def start(*args: str, name: str) -> RunDir:
    out = canvas("finetune", *FAST, *args, "--name", name, "--detach")
    assert out.returncode == 0, out.stderr
    return resolve_run(out.stdout.split()[0])


def test_kill_9_then_resume_gives_the_same_losses_and_adapter(base_dir):
    args = [
        "--base",
        str(base_dir),
        "--data",
        "embedded?limit=160",
        "--set",
        "max_steps=14",
        "--set",
        "checkpoint_every=4",
        "--set",
        "eval_every=7",
        "--set",
        "keep_checkpoints=10",
    ]
    straight = start(*args, name="ft-straight")
    assert finish(straight).state == "finished", straight.log_path.read_text()[-2000:]

    broken = start(*args, name="ft-broken")
    wait_until(lambda: last_step(broken) >= 2, what="two steps")
    os.kill(broken.read_meta().pid, signal.SIGUSR1)  # checkpoint now
    requested = wait_until(
        lambda: [c for c in events(broken, "checkpoint") if c["step"] not in (4, 8, 12)],
        what="the requested checkpoint",
    )
    checkpointed = max(c["step"] for c in events(broken, "checkpoint"))
    wait_until(lambda: last_step(broken) >= max(checkpointed, 4) + 1, what="a step past a checkpoint")
    os.kill(broken.read_meta().pid, signal.SIGKILL)
    assert finish(broken).state == "crashed"
    killed_at = last_step(broken)
    assert requested and killed_at < 14, "the run finished before it was killed"

    out = canvas("resume", broken.id)
    assert out.returncode == 0, out.stderr
    assert finish(broken).state == "finished", broken.log_path.read_text()[-2000:]
    resumed = events(broken, "run_info")[-1]["resumed_from"]
    assert resumed is not None and resumed < killed_at

    def losses(run: RunDir) -> dict[int, float]:
        return {m["step"]: m["loss"] for m in events(run, "metric")}  # a redone step keeps its last loss

    assert losses(broken) == losses(straight)  # bit-identical, every step
    assert sorted(losses(straight)) == list(range(1, 15))
    a = load_file(str(straight.path / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(broken.path / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_fails_fast_before_anything_loads(base_dir, tmp_path):
    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and?"},
                ]
            }
        )
        + "\n"
    )
    cases = [
        (["--base", str(tmp_path)], "no config.json"),
        (["--base", str(base_dir), "--data", str(chats)], "ends with a user turn"),
        (["--base", str(base_dir), "--set", "lora_r=0"], "lora_r"),
        (["--base", str(base_dir), "--set", "lora_target=c_attn"], "q_proj"),
        (["--base", "meta-llama/Llama-2-7b-hf"], "cache"),
        (["--base", str(base_dir), "--data", "guanaco"], "not in the local Hugging Face cache"),
    ]
    before = {r.id for r in list_runs()}
    for args, needle in cases:
        out = canvas("finetune", *args, "--detach")
        assert out.returncode == 2, (args, out.stderr)
        assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert {r.id for r in list_runs()} == before  # refused before a run directory was made


def test_the_embedded_default_end_to_end(tmp_path):
    """Pre-train a tiny scratch run, fine-tune it (no --base: the newest run) on the embedded
    conversations, stop and resume it, then export merged and adapter folders."""
    pre = canvas(
        "train",
        "--set",
        "max_steps=20",
        "--set",
        "micro_batch=4",
        "--set",
        "seq_len=64",
        "--set",
        "model.n_layers=2",
        "--set",
        "model.dim=64",
        "--set",
        "model.n_heads=4",
        "--set",
        "model.n_kv_heads=2",
        "--set",
        "eval_batches=2",
        "--name",
        "scratch",
    )
    assert pre.returncode == 0, pre.stderr
    scratch = resolve_run("scratch")

    run = start("--set", "max_steps=16", "--set", "checkpoint_every=4", name="ft-default")
    info = wait_until(lambda: events(run, "run_info"), what="run_info")[0]
    assert info["base"].startswith(f"our model (run {scratch.id}")
    assert info["chat_template"].startswith("base")  # our tokenizer carries a ChatML template
    wait_until(lambda: last_step(run) >= 3, what="three steps")
    out = canvas("stop", run.id)
    assert out.returncode == 0, out.stderr
    stopped = finish(run)
    assert stopped.state == "stopped", stopped
    stop_step = last_step(run)
    assert json.loads((run.checkpoints_dir / "last.json").read_text())["step"] == stop_step
    # The scratch run may go away: the fine-tune resumes from the base it exported at its start.
    assert canvas("rm", scratch.id).returncode == 0
    assert canvas("resume", run.id).returncode == 0
    assert finish(run).state == "finished", run.log_path.read_text()[-2000:]
    assert last_step(run) == 16

    evals = events(run, "eval")
    assert evals[0]["step"] == 0  # the base's own loss, the figure to beat
    assert min(e["val_loss"] for e in evals[1:]) < evals[0]["val_loss"]
    meta = run.read_meta()
    assert 0 < meta.adapter_bytes < 1_000_000 and (run.path / "base" / "config.json").is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.path / "tb"))
    acc.Reload()
    tb = {s.step: s.value for s in acc.Scalars("train/loss")}
    assert tb == pytest.approx({m.step: m.loss for m in typed_events(run, Metric)}, rel=1e-6)

    merged = canvas("export", run.id, "--merged", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    adapter = canvas("export", run.id[:-3], "--adapter", str(tmp_path / "adapter"))
    assert adapter.returncode == 0, adapter.stderr
    assert "MiB" in adapter.stdout
    half = canvas("export", run.id, "--adapter", str(tmp_path / "adapter16"), "--dtype", "bfloat16")
    assert half.returncode == 0, half.stderr
    full_w = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    half_w = load_file(str(tmp_path / "adapter16" / "adapter_model.safetensors"))
    assert {v.dtype for v in half_w.values()} == {torch.bfloat16} and half_w.keys() == full_w.keys()
    assert all(torch.equal(half_w[k], full_w[k].bfloat16()) for k in full_w)
    wrong = canvas("export", run.id, "--hf", str(tmp_path / "hf"))
    assert wrong.returncode == 2 and "--merged" in wrong.stderr

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    chat = [{"role": "user", "content": "What does json.dumps do?"}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)[
        "input_ids"
    ]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    base = AutoModelForCausalLM.from_pretrained(run.path / "base")
    reference = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-4, rtol=1e-4
        )
    # The published adapter names its base, so peft's auto class loads the pair in one call.
    from peft import AutoPeftModelForCausalLM

    auto = AutoPeftModelForCausalLM.from_pretrained(str(run.path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(auto(input_ids=ids).logits, reference(input_ids=ids).logits)
    status = canvas("status", run.id)
    assert f"{scratch.id} (exported)" in status.stdout and "MiB, from step-" in status.stdout
