"""Every local format end to end, and every bad input with its message, on small real files."""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard

from engine.config.errors import ConfigError
from engine.data import sources
from engine.data.packing import prepare
from engine.data.tokenizer import TokenizerConfig, load_tokenizer

TOK = TokenizerConfig(vocab_size=300)
DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Sphinx of black quartz, judge my vow!\nSecond line.",
    "Pack my box with five dozen liquor jugs — ünïcödé too.",
]


def expected_tokens(prepared, docs: list[str]) -> list[int]:
    """The tokenizer's own encoding of each document, each followed by EOS, in order."""
    tok = load_tokenizer(prepared.tokenizer_dir)
    out: list[int] = []
    for doc in docs:
        out += [*tok.encode(doc, add_special_tokens=False).ids, prepared.eos_id]
    return out


def packed(spec: str, **kwargs) -> tuple:
    prepared = prepare(
        spec, kwargs.pop("tokenizer", TOK), val_fraction=kwargs.pop("val_fraction", 0.0), seed=0, **kwargs
    )
    return prepared, prepared.tokens("train").tolist()


def _write_jsonl(path: Path, rows: list[dict], opener=open) -> None:
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def _make(tmp_path: Path, kind: str) -> tuple[str, list[str]]:
    """Write DOCS in one format; return the spec and the documents it must yield, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": i, "text": d} for i, d in enumerate(DOCS)]
    if kind == "txt":
        for i, d in enumerate(DOCS):
            (tmp_path / f"{i}.txt").write_text(d, encoding="utf-8")
        return str(tmp_path / "*.txt"), DOCS
    if kind == "txt-paragraphs":
        (tmp_path / "book.txt").write_text("\n\n".join(DOCS), encoding="utf-8")
        return f"{tmp_path / 'book.txt'}?sample_by=paragraph", DOCS
    if kind == "txt.gz":
        (tmp_path / "a.txt.gz").write_bytes(gzip.compress(DOCS[0].encode()))
        return str(tmp_path / "a.txt.gz"), DOCS[:1]
    if kind == "jsonl":
        _write_jsonl(tmp_path / "a.jsonl", rows)
        return str(tmp_path / "a.jsonl"), DOCS
    if kind == "jsonl-column":
        _write_jsonl(tmp_path / "a.jsonl", [{"body": d, "n": 1} for d in DOCS])
        return f"{tmp_path / 'a.jsonl'}#body", DOCS
    if kind == "json-array":
        (tmp_path / "a.json").write_text(json.dumps(rows), encoding="utf-8")
        return str(tmp_path / "a.json"), DOCS
    if kind == "jsonl.gz":
        _write_jsonl(tmp_path / "a.jsonl.gz", rows, opener=gzip.open)
        return str(tmp_path / "a.jsonl.gz"), DOCS
    if kind == "jsonl.zst":
        raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
        (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
        return str(tmp_path / "a.jsonl.zst"), DOCS
    if kind == "parquet":
        pq.write_table(pa.table({"id": [0, 1, 2], "content": DOCS}), tmp_path / "a.parquet")
        return f"{tmp_path / 'a.parquet'}#content", DOCS
    if kind == "csv":
        import csv

        with (tmp_path / "a.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "text"])
            writer.writerows([i, d] for i, d in enumerate(DOCS))
        return str(tmp_path / "a.csv"), DOCS
    if kind == "hub-folder":
        (tmp_path / "ds" / "data").mkdir(parents=True)
        pq.write_table(pa.table({"text": DOCS}), tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
        pq.write_table(
            pa.table({"text": ["held out"]}), tmp_path / "ds" / "data" / "test-00000-of-00001.parquet"
        )
        return str(tmp_path / "ds"), DOCS
    if kind == "saved-dataset":
        import datasets

        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS})}).save_to_disk(
            tmp_path / "sv"
        )
        return str(tmp_path / "sv"), DOCS
    if kind == "mixed-folder":
        (tmp_path / "mix").mkdir()
        (tmp_path / "mix" / "a.txt").write_text(DOCS[0], encoding="utf-8")
        _write_jsonl(tmp_path / "mix" / "b.jsonl", [{"text": d} for d in DOCS[1:]])
        return str(tmp_path / "mix"), DOCS  # grouped by format, in order of first appearance
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "txt",
        "txt-paragraphs",
        "txt.gz",
        "jsonl",
        "jsonl-column",
        "json-array",
        "jsonl.gz",
        "jsonl.zst",
        "parquet",
        "csv",
        "hub-folder",
        "saved-dataset",
        "mixed-folder",
    ],
)
def test_each_format_packs_exactly_the_tokenizers_encoding(tmp_path: Path, kind: str) -> None:
    spec, docs = _make(tmp_path, kind)
    prepared, tokens = packed(spec)
    assert tokens == expected_tokens(prepared, docs)
    assert prepared.manifest.splits["train"].documents == len(docs)
    assert prepared.dtype == "uint16"


def test_limit_and_several_sources(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "a.jsonl", [{"text": d} for d in DOCS])
    (tmp_path / "b.txt").write_text("Another source entirely.", encoding="utf-8")
    prepared, tokens = packed(f"{tmp_path / 'a.jsonl'}?limit=2,{tmp_path / 'b.txt'}")
    assert tokens == expected_tokens(prepared, [DOCS[0], DOCS[1], "Another source entirely."])
    assert [s.documents for s in prepared.manifest.sources] == [2, 1]


def test_weights_mix_by_proportion_without_repeating(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "a.jsonl", [{"text": f"alpha document {i}"} for i in range(10)])
    _write_jsonl(tmp_path / "b.jsonl", [{"text": f"beta document {i}"} for i in range(40)])
    prepared, _ = packed(f"1*{tmp_path / 'a.jsonl'},3*{tmp_path / 'b.jsonl'}")
    assert [s.documents for s in prepared.manifest.sources] == [10, 30]
    prepared, _ = packed(f"3*{tmp_path / 'a.jsonl'},1*{tmp_path / 'b.jsonl'}")
    assert [s.documents for s in prepared.manifest.sources] == [10, 3]


# --- bad input -----------------------------------------------------------------------------------


@pytest.fixture
def no_expensive_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input must be reported before a tokenizer is trained or anything is tokenized."""
    import engine.data.packing as packing
    import engine.data.tokenizer as tokenizer

    def boom(*_a, **_k):
        raise AssertionError("expensive work started before the input was checked")

    monkeypatch.setattr(tokenizer, "train_tokenizer", boom)
    monkeypatch.setattr(packing, "tokenize_split", boom)


def test_jsonl_line_that_is_not_json_names_the_line(tmp_path: Path, no_expensive_work) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\nthis is not json\n{"text": "c"}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        prepare(str(path), TOK)
    message = str(info.value)
    assert "line 3 is not JSON" in message and "bad.jsonl" in message and "Fix:" in message


def test_missing_text_column_lists_the_columns(tmp_path: Path, no_expensive_work) -> None:
    path = tmp_path / "a.jsonl"
    _write_jsonl(path, [{"body": "x", "title": "y"}])
    with pytest.raises(ConfigError) as info:
        prepare(str(path), TOK)
    assert "no column 'text'" in str(info.value)
    assert "the columns are body, title" in str(info.value)
    assert f"{path}#body" in str(info.value)


def test_non_text_column_is_refused(tmp_path: Path, no_expensive_work) -> None:
    path = tmp_path / "a.jsonl"
    _write_jsonl(path, [{"text": "x", "n": 3}])
    with pytest.raises(ConfigError, match=r"column 'n' in a\.jsonl holds"):
        prepare(f"{path}#n", TOK)


def test_whitespace_only_file_and_empty_corpus(tmp_path: Path, no_expensive_work) -> None:
    (tmp_path / "blank.txt").write_text(" \n\n  \n")
    with pytest.raises(ConfigError, match="holds no text"):
        prepare(str(tmp_path / "blank.txt"), TOK)
    _write_jsonl(tmp_path / "empty.jsonl", [{"text": ""}, {"text": "   "}, {"other": "x", "text": None}])
    with pytest.raises(ConfigError, match="gives no documents"):
        prepare(str(tmp_path / "empty.jsonl"), TOK)


def test_vocab_too_small_for_special_tokens(tmp_path: Path, no_expensive_work) -> None:
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(ConfigError) as info:
        prepare(str(tmp_path / "a.txt"), TokenizerConfig(vocab_size=261))
    assert info.value.field == "tokenizer.vocab_size"
    assert "at least 262" in str(info.value) and "<|im_start|>" in str(info.value)


def test_invalid_utf8_is_replaced_and_counted(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 ol\xff\xfe and more text")
    raw = b'{"text": "bad \xff byte"}\n{"text": "fine"}\n'
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(raw))
    # 13% and 3% of their bytes: above the 2% at which a file is refused, so the sources accept them
    prepared, tokens = packed(f"{tmp_path / 'a.txt'}?errors=replace,{tmp_path / 'b.jsonl.gz'}?errors=replace")
    a, b = prepared.manifest.sources
    assert (a.invalid_utf8_bytes, b.invalid_utf8_bytes) == (3, 1)
    assert a.first_invalid_utf8.endswith("a.txt at byte 3")
    assert b.first_invalid_utf8.endswith("b.jsonl.gz at byte 14")
    assert tokens == expected_tokens(
        prepared, ["caf\ufffd ol\ufffd\ufffd and more text", "bad \ufffd byte", "fine"]
    )


def test_unknown_hub_dataset_offline_fails_fast_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, no_expensive_work
) -> None:
    # Fast: refused without a connection attempt (the Hub's own retries hang 23-46 s offline).
    tried: list[object] = []

    def connect(sock: socket.socket, address: object) -> None:
        tried.append(address)
        raise OSError("this test allows no network")

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(ConfigError) as info:
        prepare("hf:nobody/no-such-dataset-xyz", TOK)
    assert tried == []
    message = str(info.value)
    assert "'nobody/no-such-dataset-xyz'" in message and "offline" in message
    assert "--data ./corpus.jsonl" in message and "embedded" in message


def test_unreachable_hub_is_detected_without_asking_datasets(
    monkeypatch: pytest.MonkeyPatch, no_expensive_work
) -> None:
    import datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=1.5: False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("datasets was asked"))
    with pytest.raises(ConfigError, match="this machine is offline") as info:
        prepare("c4", TOK)
    assert info.value.field == "data"


def test_hub_reachability_check_is_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://unreachable.invalid")
    started = time.perf_counter()
    assert sources.hub_reachable(timeout=1.0) is False
    assert time.perf_counter() - started < 3


def test_scan_counts_invalid_bytes_across_chunk_boundaries(tmp_path: Path) -> None:
    data = ("é" * 10).encode() + b"\xff" + ("ü" * 10).encode()
    (tmp_path / "a.txt").write_bytes(data)
    for chunk in (1, 3, 7, 1 << 20):
        size, invalid, first, has_text = sources.scan_file(tmp_path / "a.txt", chunk_size=chunk)
        assert (size, invalid, first, has_text) == (len(data), 1, 20, True)
    assert np.array_equal(np.frombuffer(b"", dtype=np.uint8), np.array([], dtype=np.uint8))


def test_streamed_hub_source_takes_the_limit_and_checks_the_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """The streaming path, with the Hub replaced by a local iterable dataset of the same shape."""
    import datasets

    rows = [{"url": f"u{i}", "content": f"streamed document {i}"} for i in range(50)]
    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs.get("name"), kwargs.get("split"), kwargs.get("streaming")))
        return datasets.IterableDataset.from_generator(lambda: iter(rows))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    prepared, tokens = packed("hf:someone/web:en@train#content?limit=7&streaming=1")
    assert calls == [("someone/web", "en", "train", True)]
    assert tokens == expected_tokens(prepared, [r["content"] for r in rows[:7]])
    with pytest.raises(ConfigError, match="the columns are url, content"):
        packed("hf:someone/web?limit=3&streaming=1")
