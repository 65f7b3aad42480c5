"""`canvas generate` through a real subprocess: greedy equals transformers' generate on the
exported model (a pre-training run, and a fine-tune's merged export), the --json record, and
bad flags refused before any worker starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.runs.store import resolve_run
from tests.finetune_fixtures import train_tiny_finetune
from tests.lifecycle_helpers import canvas

TRAIN = [
    "--set", "micro_batch=4", "--set", "seq_len=64", "--set", "log_every=5", "--set", "eval_batches=2",
    "--set", "max_steps=30", "--set", "checkpoint_every=10", "--set", "eval_every=10",
    "--set", "model.n_layers=2", "--set", "model.dim=64", "--set", "model.n_heads=4",
    "--set", "model.n_kv_heads=2",
]  # fmt: skip

FIELDS = {
    "text",
    "prompt_tokens",
    "new_tokens",
    "time_to_first_token_s",
    "tokens_per_s",
    "model",
    "checkpoint",
}


def generate_json(*args: str) -> dict:
    out = canvas("generate", *args, "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert set(record) >= FIELDS
    return record


def transformers_greedy(folder: Path, text: str, new: int, *, chat: bool) -> tuple[str, int, int]:
    """(new text, new tokens, prompt tokens) of transformers' greedy generate on ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    if chat:
        text = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    ids = tok(text, add_special_tokens=not chat, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False)
    tokens = out[0, ids.shape[1] :].tolist()
    return tok.decode(tokens, skip_special_tokens=True), len(tokens), ids.shape[1]


@pytest.mark.slow
def test_greedy_equals_transformers_on_the_export_of_a_pretraining_run(shared_cache, tmp_path):
    out = canvas("train", *TRAIN, "--name", "gen-src")
    assert out.returncode == 0, out.stderr
    run = resolve_run("gen-src")
    for checkpoint in ("best", "10"):
        export = canvas("export", run.id, "--hf", str(tmp_path / checkpoint), "--checkpoint", checkpoint)
        assert export.returncode == 0, export.stderr
        prompt = "The module"
        record = generate_json(
            "gen-src",
            "--checkpoint",
            checkpoint,
            "--prompt",
            prompt,
            "--temperature",
            "0",
            "--max-new-tokens",
            "40",
        )
        text, new, prompt_tokens = transformers_greedy(tmp_path / checkpoint, prompt, 40, chat=False)
        assert record["text"] == text and record["new_tokens"] == new and len(text) > 10
        assert record["prompt_tokens"] == prompt_tokens
        assert record["model"] == "gen-src" and record["checkpoint"].startswith("step-")
        assert record["time_to_first_token_s"] > 0 and record["tokens_per_s"] > 0
    assert record["checkpoint"] == "step-000010"

    # Plain text streams to stdout; a run is a continuation model, so --system is refused.
    plain = canvas(
        "generate", "gen-src", "--prompt", "The module", "--temperature", "0", "--max-new-tokens", "40"
    )
    assert plain.returncode == 0, plain.stderr
    best = generate_json("gen-src", "--prompt", "The module", "--temperature", "0", "--max-new-tokens", "40")
    assert plain.stdout == best["text"] + "\n"
    system = canvas("generate", "gen-src", "--prompt", "x", "--system", "be nice")
    assert system.returncode == 2 and "--system" in system.stderr and "continuation" in system.stderr


@pytest.mark.slow
def test_greedy_equals_transformers_on_a_finetunes_merged_export(corpus_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CANVAS_CACHE", str(corpus_cache))
    train_tiny_finetune(tmp_path, "ft")
    merged = tmp_path / "merged"
    export = canvas("export", "ft", "--merged", str(merged))
    assert export.returncode == 0, export.stderr
    prompt = "What is a list?"
    record = generate_json(str(merged), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "30")
    text, new, prompt_tokens = transformers_greedy(merged, prompt, 30, chat=True)
    assert (record["text"], record["new_tokens"], record["prompt_tokens"]) == (text, new, prompt_tokens)
    raw = generate_json(
        str(merged), "--prompt", prompt, "--raw", "--temperature", "0", "--max-new-tokens", "30"
    )
    raw_text, _, raw_prompt = transformers_greedy(merged, prompt, 30, chat=False)
    assert (raw["text"], raw["prompt_tokens"]) == (raw_text, raw_prompt) and raw_prompt < prompt_tokens

    # The fine-tune run itself answers through its template (4-bit base + adapter).
    ft = generate_json("ft", "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "8")
    assert ft["model"] == "ft" and ft["prompt_tokens"] == prompt_tokens and ft["new_tokens"] > 0


BAD_FLAGS = [
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-k", "-3"], "--top-k"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--repetition-penalty", "0"], "--repetition-penalty"),
    (["--checkpoint", "newest"], "--checkpoint"),
    (["--stop", ""], "--stop"),
    (["--prompt-file", "/no/such/file.txt"], "--prompt-file"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS)
def test_bad_flags_are_refused_before_a_worker_starts(tmp_path, canvas_home, flags, named):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    args = ["generate", str(folder), *flags]
    if "--prompt-file" not in flags:
        args += ["--prompt", "hi"]
    out = canvas(*args)
    assert out.returncode == 2, out
    assert named in out.stderr and "Fix" in out.stderr and "Traceback" not in out.stderr
    assert not (canvas_home / "cache" / "workers").exists()  # refused before any worker started


def test_an_unknown_model_is_refused_with_the_fix(canvas_home):
    out = canvas("generate", "no-such-run", "--prompt", "hi")
    assert out.returncode == 2 and "no-such-run" in out.stderr and "canvas runs" in out.stderr
    assert "Traceback" not in out.stderr
