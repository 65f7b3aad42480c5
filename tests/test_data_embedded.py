"""The embedded corpus: real English, offline, deterministic. The tests read the session's prepared
copy (``prepared_cache`` in tests/conftest.py, the same ``prepare`` call as the ``tiny`` preset's),
so the suite tokenizes the corpus once, not once more for this module."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from engine.data import embedded
from engine.data.loader import TokenLoader
from engine.data.packing import PreparedData, prepare
from engine.data.tokenizer import TokenizerConfig, load_tokenizer
from engine.locations import CACHE_ENV


@pytest.fixture(scope="module")
def prepared(prepared_cache: Path) -> PreparedData:
    """The tiny preset's data: the embedded corpus with a 4096-token BPE (the CLI's defaults), as
    the session prepared it (this call finds it in the cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(prepared_cache))
        return prepare("embedded", TokenizerConfig(vocab_size=4096))


@pytest.fixture
def same_home(prepared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test reads (and the CLI prepares into) the cache ``prepared`` came from."""
    monkeypatch.setenv(CACHE_ENV, str(prepared_cache))
    return prepared_cache


def test_corpus_is_real_english_of_at_least_two_megabytes(prepared: PreparedData, same_home: Path) -> None:
    docs = embedded.documents()
    size = sum(len(d.encode()) for d in docs)
    assert size >= 2_000_000 and len(docs) > 500
    joined = "\n".join(docs)
    assert 'The "if" statement is used for conditional execution' in joined  # pydoc_data topic
    assert "Module json" in joined and "JSON (JavaScript Object Notation)" in joined  # stdlib docstring
    assert prepared.manifest.sources[0].text_bytes == size


def test_corpus_is_deterministic(prepared: PreparedData, same_home: Path) -> None:
    cached = embedded.corpus_path().read_bytes()
    fresh = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in embedded.iter_documents())
    assert hashlib.sha256(fresh.encode()).hexdigest() == hashlib.sha256(cached).hexdigest()
    assert embedded.corpus_id().startswith("cpython-docs-v1-")


def test_packed_tokens_are_the_tokenizers_encoding_plus_eos(prepared: PreparedData) -> None:
    tok = load_tokenizer(prepared.tokenizer_dir)
    docs = [
        json.loads(line)["text"]
        for line in (prepared.root.parent.parent / "embedded" / f"{embedded.corpus_id()}.jsonl")
        .read_text()
        .splitlines()
    ]
    expected = sum(len(e.ids) + 1 for e in tok.encode_batch(docs, add_special_tokens=False))
    splits = prepared.manifest.splits
    assert splits["train"].tokens + splits["val"].tokens == expected
    assert splits["train"].documents + splits["val"].documents == len(docs)
    assert splits["val"].documents == round(0.02 * len(docs))
    assert prepared.vocab_size == 4096 and prepared.dtype == "uint16"
    assert prepared.tokens("train").max() < 4096
    assert (prepared.tokens("val") == prepared.eos_id).sum() == splits["val"].documents


def test_tiny_preset_loader_runs_on_it(prepared: PreparedData) -> None:
    loader = TokenLoader(prepared.train, seq_len=256, micro_batch=8, seed=0)
    x, _y = loader.next_batch()
    assert x.shape == (8, 256) and int(x.max()) < prepared.vocab_size
    assert loader.batches_per_epoch > 300
    val = TokenLoader(prepared.val, seq_len=256, micro_batch=8, shuffle=False)
    assert val.batches_per_epoch >= 1


def test_cli_default_prepare_is_the_cached_embedded_data(
    prepared: PreparedData, same_home: Path, capsys: pytest.CaptureFixture
) -> None:
    from canvas_tui.cli import main

    assert main(["data", "prepare", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cached"] is True and out["key"] == prepared.manifest.key
