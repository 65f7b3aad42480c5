"""Packing: caching by content hash, atomic writes, the held-out split, the saved tokenizer, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import engine.data.packing as packing
import engine.data.sources as sources
import engine.data.tokenizer as tokenizer
from engine.config.errors import ConfigError
from engine.data.packing import data_cache_root, prepare
from engine.data.progress import DataProgress
from engine.data.tokenizer import EOS, SPECIAL_TOKENS, TokenizerConfig, load_tokenizer

TOK = TokenizerConfig(vocab_size=320)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(40):
            fh.write(
                json.dumps({"text": f"Document number {i} says hello to the packer, {i * 7} times."}) + "\n"
            )
    return path


def _all_docs(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_second_prepare_reuses_the_cache_and_does_no_work(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = prepare(str(corpus), TOK, seed=3)
    assert not first.cached
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.root.iterdir()}

    def boom(*_a, **_k):
        raise AssertionError("the second preparation did work")

    for module, name in (
        (packing, "tokenize_split"),
        (sources, "load_source"),
        (tokenizer, "train_tokenizer"),
        (sources, "check_source"),
    ):
        monkeypatch.setattr(module, name, boom)
    second = prepare(str(corpus), TOK, seed=3)
    assert second.cached and second.root == first.root and second.manifest == first.manifest
    assert {p.name: p.stat().st_mtime_ns for p in second.root.iterdir()} == mtimes


def test_cache_key_follows_everything_that_determines_the_bytes(corpus: Path) -> None:
    base = prepare(str(corpus), TOK, seed=3)
    assert prepare(str(corpus), TOK, seed=4).root != base.root
    assert prepare(str(corpus), TokenizerConfig(vocab_size=330), seed=3).root != base.root
    assert prepare(str(corpus), TOK, seed=3, val_fraction=0.1).root != base.root
    with corpus.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "one more document"}) + "\n")
    changed = prepare(str(corpus), TOK, seed=3)
    assert changed.root != base.root and not changed.cached
    assert changed.manifest.documents == 41


def test_a_failed_preparation_leaves_no_cache_behind(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = packing.tokenize_split
    calls = []

    def dies_midway(*args, **kwargs):
        calls.append(1)
        real(*args, **kwargs)  # train.bin is fully written in the temporary folder ...
        raise KeyboardInterrupt  # ... and then the process is interrupted

    monkeypatch.setattr(packing, "tokenize_split", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(corpus), TOK)
    assert calls and list(data_cache_root().iterdir()) == []
    monkeypatch.setattr(packing, "tokenize_split", real)
    assert not prepare(str(corpus), TOK).cached


def test_leftovers_of_killed_processes_are_removed(corpus: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = data_cache_root() / f".tmp-abc-{dead.pid}-deadbeef"
    (orphan / "work").mkdir(parents=True)
    mine = data_cache_root() / f".tmp-abc-{os.getpid()}-live"
    mine.mkdir()
    prepare(str(corpus), TOK)
    assert not orphan.exists() and mine.exists()


def test_validation_split_holds_out_whole_documents(corpus: Path) -> None:
    prepared = prepare(str(corpus), TOK, val_fraction=0.1, seed=5)
    splits = prepared.manifest.splits
    assert (splits["train"].documents, splits["val"].documents) == (36, 4)
    tok = load_tokenizer(prepared.tokenizer_dir)
    encoded = {d: [*tok.encode(d, add_special_tokens=False).ids, prepared.eos_id] for d in _all_docs(corpus)}
    val = prepared.tokens("val").tolist()
    train = prepared.tokens("train").tolist()
    assert len(train) + len(val) == sum(len(v) for v in encoded.values())
    val_docs = tok.decode(val, skip_special_tokens=False).split(EOS)[:-1]
    assert len(val_docs) == 4 and all(d in encoded for d in val_docs)
    assert not any(d in tok.decode(train, skip_special_tokens=False).split(EOS) for d in val_docs)
    again = prepare(str(corpus), TOK, val_fraction=0.1, seed=5, force=True)
    assert again.tokens("val").tolist() == val


def test_a_single_document_is_split_by_tokens(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("To be, or not to be, that is the question. " * 40, encoding="utf-8")
    prepared = prepare(str(tmp_path / "input.txt"), TOK, val_fraction=0.1)
    train, val = prepared.manifest.splits["train"], prepared.manifest.splits["val"]
    assert train.split_by == "tokens" and val.tokens >= 2
    tok = load_tokenizer(prepared.tokenizer_dir)
    whole = [*tok.encode((tmp_path / "input.txt").read_text(), add_special_tokens=False).ids, prepared.eos_id]
    assert prepared.tokens("train").tolist() + prepared.tokens("val").tolist() == whole


def test_parallel_tokenization_gives_the_same_bytes(corpus: Path) -> None:
    one = prepare(str(corpus), TOK, val_fraction=0.1)
    two = prepare(str(corpus), TOK, val_fraction=0.1, num_proc=2, force=True)
    assert one.train.read_bytes() == two.train.read_bytes() and one.val.read_bytes() == two.val.read_bytes()


def test_saved_tokenizer_loads_with_transformers_and_can_be_adopted(corpus: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    prepared = prepare(str(corpus), TOK, val_fraction=0)
    hf = AutoTokenizer.from_pretrained(str(prepared.tokenizer_dir))
    assert [hf.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (hf.eos_token, hf.bos_token, hf.pad_token) == ("<|eos|>", "<|bos|>", "<|pad|>")
    text = "Document number 3 says hello"
    assert hf(text)["input_ids"] == load_tokenizer(prepared.tokenizer_dir).encode(text).ids
    chat = hf.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert len(hf) == prepared.vocab_size == prepared.manifest.tokenizer.vocab_size

    adopted = prepare(str(corpus), TokenizerConfig(pretrained=str(prepared.tokenizer_dir)), val_fraction=0)
    assert adopted.root != prepared.root
    assert adopted.manifest.tokenizer.sha256 == prepared.manifest.tokenizer.sha256
    assert adopted.train.read_bytes() == prepared.train.read_bytes()

    exported = tokenizer.export_tokenizer(prepared.tokenizer_dir, tmp_path / "export")
    assert AutoTokenizer.from_pretrained(str(exported)).eos_token_id == prepared.eos_id


def test_missing_pretrained_tokenizer_path_fails_before_work(corpus: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder") as info:
        prepare(str(corpus), TokenizerConfig(pretrained="./no/such/tokenizer"))
    assert info.value.field == "tokenizer.pretrained"


def test_progress_reports_every_stage_with_rates(corpus: Path) -> None:
    events: list[DataProgress] = []
    prepare(str(corpus), TOK, progress=events.append)
    stages = [e.stage for e in events]
    for stage in ("check", "load", "tokenizer", "tokenize", "done"):
        assert stage in stages
    last_tokenize = [e for e in events if e.stage == "tokenize"][-1]
    assert last_tokenize.bytes_total > 0 and last_tokenize.bytes_done == last_tokenize.bytes_total
    assert last_tokenize.fraction == 1.0 and last_tokenize.eta_s == 0.0 and last_tokenize.mb_per_s > 0
    assert last_tokenize.documents == 40 and last_tokenize.tokens > 40
    assert json.loads(json.dumps(last_tokenize.as_event()))["type"] == "data_progress"


def test_cli_prepare_prints_the_summary_and_a_progress_bar(
    corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    from canvas_tui.cli import main

    assert (
        main(["data", "prepare", "--data", str(corpus), "--vocab-size", "320", "--val-fraction", "0.1"]) == 0
    )
    out, err = capsys.readouterr()
    assert "train" in out and "36 documents" in out and "vocab 320" in out
    assert "tokenize" in err and "MB/s" in err
    assert (
        main(
            [
                "data",
                "prepare",
                "--data",
                str(corpus),
                "--vocab-size",
                "320",
                "--val-fraction",
                "0.1",
                "--json",
            ]
        )
        == 0
    )
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["cached"] is True and manifest["splits"]["val"]["documents"] == 4

    assert main(["data", "sources"]) == 0
    assert "owt+c4" in capsys.readouterr().out
    assert main(["data", "prepare", "--data", str(corpus) + ".missing"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
