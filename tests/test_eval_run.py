"""`canvas eval` as a run of kind `eval`, through real subprocesses and real tiny models: two
pre-training runs on one `--data` (results.json, samples.jsonl, the paired comparison and its
verdict), a fine-tune against its own base on held-out conversations, bad input refused with no
run directory left, and a detached evaluation listed as kind eval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.eval.results import read_results
from engine.eval.samples import read_samples
from engine.runs import RunKind, create_run
from engine.runs.store import RunDir, list_runs, resolve_run
from tests.chat_fixtures import TEXT
from tests.lifecycle_helpers import canvas
from tests.waiting import wait_until

SMALL = ["--samples", "4", "--prompt-tokens", "6", "--new-tokens", "5", "--device", "cpu"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "A list holds values in order; a dict maps keys to values; a set keeps each value once.",
    "def add(a, b): return a + b is a function that adds two numbers and returns the sum.",
    "Loops walk over lists and dicts, and the break statement leaves the loop at once.",
    "A chat model answers questions about Python, lists, loops and the standard library.",
    "The lazy dog sleeps while the quick brown fox jumps over it again and again today.",
]


def tiny_run(name: str, *, seed: int, head_scale: float, parrot: bool = False) -> RunDir:
    """A finished pre-training run with a tiny random Llama whose output layer is scaled by
    ``head_scale``: 0 makes it predict the uniform distribution. ``parrot``: it only ever says
    " the" or " a" (two rows of the output layer of opposite sign on one hidden dimension, the
    rest zero), confidently: text that shares words with the references, and a perplexity far
    worse than uniform."""
    import torch

    from engine.data.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
    from engine.model.weights import save_model
    from engine.train.layout import checkpoint_name
    from tests.helpers import random_model

    run = create_run(RunKind.PRETRAIN, name, {"preset": "tiny"})
    tok = train_tokenizer([[TEXT, *CORPUS]], TokenizerConfig(vocab_size=300, min_frequency=1))
    save_tokenizer(tok, run.path / "tokenizer")
    model = random_model(seed=seed, vocab_size=tok.get_vocab_size(), max_seq_len=64)
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
        if parrot:
            model.lm_head.weight.zero_()
            model.lm_head.weight[tok.token_to_id("Ġthe"), 0] = 10.0
            model.lm_head.weight[tok.token_to_id("Ġa"), 0] = -10.0
    save_model(model, run.checkpoints_dir / checkpoint_name(10))
    run.update_meta(status="finished", total_steps=10)
    return run


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n")
    return path


def run_dirs() -> list[str]:
    return [r.id for r in list_runs()]


def test_two_runs_on_the_same_data_compared(corpus: Path):
    good = tiny_run("uniform", seed=0, head_scale=0.0)
    bad = tiny_run("sharp", seed=1, head_scale=1.0, parrot=True)
    spec = f"{corpus}?sample_by=line"
    out = canvas(
        "eval",
        "sharp",
        "uniform",
        "--data",
        spec,
        *SMALL,
        "--new-tokens",
        "40",
        "--seed",
        "3",
        "--json",
        "--name",
        "ev",
    )
    assert out.returncode == 0, out.stderr
    # Followed (no --detach): progress of each model's tasks on stderr, the results on stdout.
    for phase in ("sharp: perplexity", "sharp: generation", "uniform: perplexity", "uniform: generation"):
        assert phase in out.stderr, out.stderr
    printed = json.loads(out.stdout)
    run = resolve_run("ev")
    assert run.read_meta().kind == RunKind.EVAL and run.read_meta().status == "finished"
    results = read_results(run.path)

    # Settings recorded; both models read the same six documents.
    s = results.settings
    assert (s["data"], s["samples"], s["seed"], s["prompt_tokens"], s["continuation_tokens"]) == (
        spec,
        4,
        3,
        6,
        40,
    )
    assert s["sampling"]["temperature"] == 0.0 and s["n_bootstrap"] == 1000
    assert [m.label for m in results.models] == ["sharp", "uniform"]
    for m in results.models:
        assert m.kind == "pretrain" and m.checkpoint == "step-000010" and m.window == 64
        assert m.documents == 4 and m.bytes == sum(d["bytes"] for d in m.per_document)
        # bits per byte is what the stored per-document log-likelihoods imply.
        nll = -sum(d["loglikelihood"] for d in m.per_document)
        assert m.metrics["bits_per_byte"]["value"] == pytest.approx(nll / m.bytes / math.log(2), rel=1e-9)
        assert m.metrics["perplexity"]["value"] == pytest.approx(math.exp(nll / m.tokens), rel=1e-9)
        words = sum(d["words"] for d in m.per_document)
        assert m.metrics["word_perplexity"]["value"] == pytest.approx(math.exp(nll / words), rel=1e-9)
        lo, hi = m.metrics["bits_per_byte"]["ci95"]
        assert lo <= m.metrics["bits_per_byte"]["value"] <= hi
        assert set(m.metrics) >= {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "chrf_pp"}
        assert m.bleu_signature.startswith("nrefs:1|") and "version:" in m.bleu_signature
        assert m.tokens_per_s > 0
        # The window and the tokenizer are recorded with the result.
        own = resolve_run(m.label).path / "tokenizer"
        assert m.tokenizer == f"OurTokenizer, vocabulary 300 ({own})", m.tokenizer
    uniform = results.model("uniform")
    # The uniform model's bits per byte: log2(V) per token, exactly.
    assert uniform.metrics["perplexity"]["value"] == pytest.approx(300, rel=1e-4)
    assert (
        results.model("sharp").metrics["bits_per_byte"]["value"] > uniform.metrics["bits_per_byte"]["value"]
    )

    # The paired comparison of bits per byte: b - a < 0 with an interval below 0, uniform named.
    bpb = next(c for c in results.comparisons if c.metric == "bits_per_byte")
    assert (bpb.a, bpb.b) == ("sharp", "uniform") and bpb.difference < 0
    assert bpb.ci95 is not None and bpb.ci95[1] < 0
    assert bpb.verdict.startswith("uniform better on bits per byte")
    assert {c.metric for c in results.comparisons} >= {"bits_per_byte", "rougeL", "bleu", "chrf"}

    # samples.jsonl: one line per generation sample, both outputs, scores that re-score exactly.
    samples = read_samples(run.path / "samples.jsonl")
    assert len(samples) == 4 and all(set(x.outputs) == {"sharp", "uniform"} for x in samples)
    assert all(x.task == "generation" and x.reference and x.prompt for x in samples)
    # The prompt is a document's opening and the reference the text right after it (byte-level BPE
    # decodes losslessly, so together they are the document's start, exactly).
    assert all(any(f"{d}\n".startswith(x.prompt + x.reference) for d in CORPUS) for x in samples)
    assert all(set(x.outputs["sharp"].split()) <= {"the", "a"} for x in samples)
    assert results.model("sharp").metrics["rouge1"]["value"] > 0  # it says "the", as the references do
    from engine.eval.scoring import score_samples

    for m in results.models:
        again = score_samples(samples, m.label, seed=3, n_bootstrap=1000)
        for key in ("rougeL", "bleu", "chrf"):
            assert again.metrics[key] == m.metrics[key]

    # --json: per model the issue's keys, nested {"value", "ci95"}; the settings.
    by_label = {m["label"]: m for m in printed["models"]}
    for key in ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "rougeL", "chrf_pp"):
        assert set(by_label["uniform"][key]) == {"value", "ci95"}
    assert by_label["sharp"]["bits_per_byte"] == results.model("sharp").metrics["bits_per_byte"]
    assert printed["settings"]["seed"] == 3 and "bleu_signature" in by_label["sharp"]
    issue_keys = {
        "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "rouge1", "rouge2", "rougeL",
        "rougeLsum", "bleu", "chrf", "chrf_pp", "bleu_signature", "tokens_per_s",
    }  # fmt: skip
    for entry in printed["models"]:
        assert issue_keys <= set(entry), issue_keys - set(entry)
        assert (
            entry["tokens_per_s"] > 0
            and entry["bleu_signature"] == results.model(entry["label"]).bleu_signature
        )
        for key in issue_keys - {"bleu_signature", "tokens_per_s"}:
            assert entry[key] == results.model(entry["label"]).metrics[key], key
    assert {"data", "samples", "seed", "prompt_tokens", "continuation_tokens", "sampling"} <= set(
        printed["settings"]
    )

    # `canvas score EVAL_RUN` re-scores samples.jsonl and reproduces every stored number exactly.
    rescored = canvas("score", "ev", "--json")
    assert rescored.returncode == 0, rescored.stdout + rescored.stderr
    report = json.loads(rescored.stdout)
    assert report["seed"] == 3 and report["n_bootstrap"] == 1000 and report["samples"] == 4
    for entry in report["models"]:
        assert entry["matches"] == {
            **dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "chrf_pp"), True),
            **dict.fromkeys(("bleu_signature", "chrf_signature", "chrf_pp_signature"), True),
        }
        assert entry["per_sample_matches"] == 4
        assert entry["bleu"] == results.model(entry["label"]).metrics["bleu"]

    # Each evaluated run links the evaluation.
    assert good.read_meta().evals == [run.id] and bad.read_meta().evals == [run.id]

    # The table: a row per model, the signature, the verdict.
    table = canvas("eval", "sharp", "uniform", "--data", spec, *SMALL, "--seed", "3", "--tasks", "perplexity")
    assert table.returncode == 0, table.stderr
    assert "bits/byte" in table.stdout and "uniform better on bits per byte" in table.stdout
    assert "ROUGE-L" not in table.stdout  # generation did not run: its columns are absent


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--samples", "0"], "--samples"),
        (["--tasks", "bogus"], "--tasks"),
        (["--prompt-tokens", "0"], "--prompt-tokens"),
        (["--data", "/no/such/corpus.txt"], "--data"),
        (["--checkpoint", "newest"], "--checkpoint"),
    ],
)
def test_bad_input_is_refused_before_a_run_exists(corpus: Path, flags: list[str], named: str):
    tiny_run("m", seed=0, head_scale=1.0)
    before = run_dirs()
    out = canvas("eval", "m", *(["--data", str(corpus)] if "--data" not in flags else []), *flags)
    assert out.returncode == 2 and named in out.stderr and "Fix" in out.stderr, out.stderr
    assert run_dirs() == before


def test_unknown_model_and_folder_without_data_are_refused(tmp_path: Path):
    before = run_dirs()
    out = canvas("eval", "no-such-run", "--samples", "2")
    assert out.returncode == 2 and "no-such-run" in out.stderr and "canvas runs" in out.stderr
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    out = canvas("eval", str(folder))
    assert out.returncode == 2 and "--data" in out.stderr
    create_run(RunKind.PRETRAIN, "empty", {"preset": "tiny"})  # no checkpoint yet
    before = run_dirs()
    out = canvas("eval", "empty", "--data", str(tmp_path / "hf" / "config.json"))
    assert out.returncode == 2 and "no checkpoint yet" in out.stderr, out.stderr
    out = canvas("eval", "empty", "empty")
    assert out.returncode == 2 and "no checkpoint yet" in out.stderr, out.stderr
    tiny_run("handmade", seed=0, head_scale=1.0)  # its run.json records no data settings
    before = run_dirs()
    out = canvas("eval", "handmade")
    assert out.returncode == 2 and "--data" in out.stderr and "held-out split" in out.stderr, out.stderr
    assert run_dirs() == before


def test_detached_eval_is_listed_as_kind_eval(corpus: Path):
    tiny_run("m", seed=0, head_scale=1.0)
    out = canvas(
        "eval",
        "m",
        "--data",
        str(corpus),
        *SMALL,
        "--tasks",
        "perplexity",
        "--checkpoint",
        "last",
        "--detach",
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    run = resolve_run(run_id)
    wait_until(lambda: run.read_meta().status in ("finished", "failed"), timeout=120)
    assert run.read_meta().status == "finished", (run.path / "engine.log").read_text()
    listed = canvas("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert rows[run_id]["kind"] == "eval"
    evaluated = read_results(run.path).model("m")
    assert "bits_per_byte" in evaluated.metrics and evaluated.checkpoint == "step-000010"
    assert read_results(run.path).settings["checkpoint"] == "last"
    assert "rouge1" not in evaluated.metrics and not (run.path / "samples.jsonl").read_text().strip()


def tiny_finetune(tmp_path: Path, name: str = "ft") -> RunDir:
    """A finished fine-tune run (no training: a random LoRA adapter, so it differs from its base)
    on a tiny Llama base, with the embedded chat data and a quarter of it held out."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from tests.finetune_fixtures import tiny_base, tiny_tokenizer

    base = tiny_base(tmp_path / "llama", tiny_tokenizer(tmp_path / "tok"), seed=2)
    config = {
        "base": str(base),
        "data": "embedded?limit=24",
        "val_fraction": 0.25,
        "seed": 0,
        "quantization": "none",
        "seq_len": 256,
        "lora_r": 4,
    }
    run = create_run(RunKind.FINETUNE, name, config)
    model = get_peft_model(
        LlamaForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False),
    )
    model.save_pretrained(run.path / "adapter")
    run.update_meta(status="finished", base=str(base), base_source=str(base), adapter="adapter")
    return run


@pytest.mark.slow
def test_a_finetune_against_its_base_on_held_out_conversations(corpus_cache, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CANVAS_CACHE", str(corpus_cache))
    ft = tiny_finetune(tmp_path)
    out = canvas(
        "eval", "ft", "--with-base", "--samples", "3", "--new-tokens", "4", "--device", "cpu", "--json"
    )
    assert out.returncode == 0, out.stderr
    run = resolve_run(json.loads(out.stdout)["run"])
    results = read_results(run.path)
    assert [m.label for m in results.models] == ["ft", "ft (base)"]
    on, off = results.model("ft"), results.model("ft (base)")
    assert (on.adapter, off.adapter) == (True, False) and on.kind == off.kind == "finetune"
    # Held-out conversations: reply perplexity for both, different weights give different numbers.
    assert "reply_perplexity" in on.metrics and "reply_perplexity" in off.metrics
    assert on.metrics["reply_perplexity"]["value"] != off.metrics["reply_perplexity"]["value"]
    assert "bits_per_byte" not in on.metrics  # no plain documents without --data
    for m in (on, off):
        rows = m.extra["reply_per_sample"]
        assert len(rows) == 3
        nll = -sum(r["loglikelihood"] for r in rows)
        tokens = sum(r["tokens"] for r in rows)
        assert m.metrics["reply_perplexity"]["value"] == pytest.approx(math.exp(nll / tokens), rel=1e-9)
    compared = next(c for c in results.comparisons if c.metric == "reply_perplexity")
    assert (compared.a, compared.b) == ("ft", "ft (base)") and compared.ci95 is not None
    samples = read_samples(run.path / "samples.jsonl")
    assert len(samples) == 3 and all(s.task == "reply" and s.prompt.startswith("user: ") for s in samples)
    assert all(set(s.outputs) == {"ft", "ft (base)"} for s in samples)
    assert results.settings["sources"][f"run:{ft.id}"]["source"] == f"run:{ft.id} held-out conversations"
    assert ft.read_meta().evals == [run.id]

    # A model folder (the fine-tune's base, its own tokenizer) and the fine-tune on one --data:
    # the same documents and bytes for both, bits per byte comparable across them.
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    base = str(tmp_path / "llama")
    out = canvas(
        "eval",
        base,
        "ft",
        "--data",
        f"{corpus}?sample_by=line",
        "--tasks",
        "perplexity",
        "--samples",
        "5",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    results = read_results(resolve_run(json.loads(out.stdout)["run"]).path)
    folder, tuned = results.models
    assert (folder.kind, folder.adapter, tuned.kind) == ("hf", None, "finetune")
    assert [d["index"] for d in folder.per_document] == [d["index"] for d in tuned.per_document]
    assert folder.bytes == tuned.bytes and folder.documents == tuned.documents == 5
    assert folder.metrics["bits_per_byte"]["value"] != tuned.metrics["bits_per_byte"]["value"]
    assert next(c for c in results.comparisons if c.metric == "bits_per_byte").ci95 is not None


@pytest.mark.slow
def test_a_pretraining_run_is_scored_on_its_own_validation_split(shared_cache):
    """Without --data: the documents its training held out (val.bin, decoded), every token of them."""
    import shutil

    from engine.config.train import load_train_config
    from engine.data import TokenizerConfig, prepare
    from engine.eval.tasks import pretrain_validation
    from engine.model.weights import save_model
    from engine.train.layout import checkpoint_name
    from tests.helpers import random_model

    cfg = load_train_config("tiny", None, [], None)
    run = create_run(RunKind.PRETRAIN, "own", cfg.to_dict())
    prepared = prepare(
        cfg.data, TokenizerConfig(vocab_size=cfg.vocab_size), val_fraction=cfg.val_fraction, seed=cfg.seed
    )
    shutil.copytree(prepared.tokenizer_dir, run.path / "tokenizer")
    save_model(
        random_model(seed=0, vocab_size=prepared.vocab_size, max_seq_len=64),
        run.checkpoints_dir / checkpoint_name(5),
    )
    run.update_meta(status="finished", total_steps=5)

    docs = pretrain_validation(run.path, cfg.to_dict())
    val = prepared.manifest.splits["val"]
    assert len(docs) == val.documents
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(prepared.tokenizer_dir / "tokenizer.json"))
    assert sum(len(tok.encode(d, add_special_tokens=False).ids) + 1 for d in docs) == val.tokens  # + EOS each

    out = canvas(
        "eval",
        "own",
        "--samples",
        "2",
        "--prompt-tokens",
        "8",
        "--new-tokens",
        "3",
        "--device",
        "cpu",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    results = read_results(resolve_run(json.loads(out.stdout)["run"]).path)
    m = results.model("own")
    assert m.source == f"run:{run.id} validation" and m.documents == 2 and results.settings["data"] is None
    texts = {docs[d["index"]] for d in m.per_document}
    assert m.bytes == sum(len(t.encode()) for t in texts)


def test_a_stopped_eval_ends_stopped_without_results(corpus: Path):
    from engine.runs.control import stop_run

    tiny_run("m", seed=0, head_scale=1.0)
    out = canvas("eval", "m", "--data", str(corpus), "--samples", "6", "--new-tokens", "40", "--detach")
    assert out.returncode == 0, out.stderr
    run = resolve_run(out.stdout.strip())
    status = stop_run(run, wait=True, timeout=120)
    assert status.state == "stopped", (run.path / "engine.log").read_text()
    assert not (run.path / "results.json").exists() and not (run.path / "samples.jsonl").exists()
    assert resolve_run("m").read_meta().evals == []
