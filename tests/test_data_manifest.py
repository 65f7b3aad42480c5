"""The prepared-data manifest as a dataclass: exact round trips, and folders prepared before it still open."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.data.manifest import Manifest, SplitInfo, read_dtype
from engine.data.packing import PreparedData

#: Written by the packing code before the manifest was a dataclass (a real run, 10 documents).
LEGACY = """{
  "format": 1,
  "key": "1a1813274871824ee0837fc1",
  "created": "2026-11-30T18:29:31+00:00",
  "spec": "/tmp/oldprep/c.jsonl",
  "spec_structured": {
    "sources": [
      {
        "path": "/tmp/oldprep/c.jsonl"
      }
    ]
  },
  "sources": [
    {
      "spec": "/tmp/oldprep/c.jsonl",
      "kind": "local",
      "documents": 10,
      "available_documents": 10,
      "text_bytes": 400,
      "invalid_utf8_bytes": 0,
      "first_invalid_utf8": null,
      "files": 1
    }
  ],
  "val_fraction": 0.2,
  "seed": 1,
  "dtype": "uint16",
  "separator": "eos-after-each-document",
  "splits": {
    "train": {
      "file": "train.bin",
      "documents": 8,
      "tokens": 72,
      "text_bytes": 320
    },
    "val": {
      "file": "val.bin",
      "documents": 2,
      "tokens": 18,
      "text_bytes": 80
    }
  },
  "tokenizer": {
    "source": "trained",
    "vocab_size": 292,
    "eos_id": 2,
    "eos_token": "<|eos|>",
    "sha256": "52a67449b762010914d2cee2baa0aded52db34ccdb4912cde0bd7799c39eb174",
    "dir": "tokenizer"
  },
  "text_bytes": 400,
  "tokenize_seconds": 0.066,
  "tokenize_mb_per_s": 0.006,
  "seconds": 4.343
}
"""

#: The same, for a single document cut by tokens (no per-split text_bytes, split_by instead).
LEGACY_SPLIT_BY_TOKENS_SPLITS = {
    "train": {"file": "train.bin", "documents": 1, "tokens": 181, "split_by": "tokens"},
    "val": {"file": "val.bin", "documents": 0, "tokens": 21, "split_by": "tokens"},
}


def test_a_legacy_manifest_loads_into_typed_fields_and_writes_back_byte_identical() -> None:
    manifest = Manifest.from_json(LEGACY)
    assert manifest.key == "1a1813274871824ee0837fc1" and manifest.dtype == "uint16"
    assert manifest.splits["train"] == SplitInfo(file="train.bin", documents=8, tokens=72, text_bytes=320)
    assert manifest.splits["val"].documents == 2 and manifest.sources[0].available_documents == 10
    assert manifest.tokenizer.vocab_size == 292 and manifest.tokenizer.eos_token == "<|eos|>"
    assert (manifest.documents, manifest.tokens, manifest.seconds) == (10, 90, 4.343)
    assert manifest.extra == {}
    assert manifest.to_json() == LEGACY


def test_split_by_tokens_splits_round_trip_without_inventing_text_bytes() -> None:
    data = json.loads(LEGACY)
    data["splits"] = LEGACY_SPLIT_BY_TOKENS_SPLITS
    manifest = Manifest.from_dict(data)
    assert manifest.splits["train"].split_by == "tokens" and manifest.splits["train"].text_bytes is None
    assert manifest.to_dict()["splits"] == LEGACY_SPLIT_BY_TOKENS_SPLITS


def test_unknown_keys_of_a_newer_version_are_kept_on_rewrite() -> None:
    data = json.loads(LEGACY)
    data["shards"] = [{"file": "train-0001.bin"}]
    manifest = Manifest.from_dict(data)
    assert manifest.extra == {"shards": [{"file": "train-0001.bin"}]}
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.to_dict()["shards"] == [{"file": "train-0001.bin"}]


def test_a_manifest_without_seconds_leaves_the_key_out() -> None:
    manifest = replace(Manifest.from_json(LEGACY), seconds=None)
    assert "seconds" not in manifest.to_dict()
    assert Manifest.from_json(manifest.to_json()).seconds is None


def test_a_folder_prepared_by_the_old_code_opens(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(LEGACY, encoding="utf-8")
    prepared = PreparedData.open(tmp_path)
    assert prepared.train == tmp_path / "train.bin" and prepared.val == tmp_path / "val.bin"
    assert (prepared.vocab_size, prepared.eos_id, prepared.dtype) == (292, 2, "uint16")
    summary = prepared.summary().splitlines()
    assert summary[1].split() == ["train", "8", "documents", "72", "tokens", "(train.bin,", "uint16)"]
    assert summary[-1] == "  prepared in 4.3 s (0.0 MB/s tokenizing)"
    assert read_dtype(tmp_path) == "uint16" and read_dtype(tmp_path / "nowhere") is None


def test_a_missing_required_key_is_an_error_not_a_default() -> None:
    data = json.loads(LEGACY)
    del data["dtype"]
    with pytest.raises(KeyError, match="dtype"):
        Manifest.from_dict(data)


def test_prepare_writes_the_layout_old_readers_expect(tmp_path: Path) -> None:
    from engine.data.packing import prepare
    from engine.data.tokenizer import TokenizerConfig

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"text": f"document number {i} says hello world again"}) + "\n" for i in range(10)
        ),
        encoding="utf-8",
    )
    prepared = prepare(str(corpus), TokenizerConfig(vocab_size=300), val_fraction=0.2, seed=1)
    written = json.loads((prepared.root / "manifest.json").read_text(encoding="utf-8"))
    legacy = json.loads(LEGACY)
    assert list(written) == list(legacy)
    assert {name: list(split) for name, split in written["splits"].items()} == {
        name: list(split) for name, split in legacy["splits"].items()
    }
    assert list(written["sources"][0]) == list(legacy["sources"][0])
    assert list(written["tokenizer"]) == list(legacy["tokenizer"])
    # Same inputs as the legacy run, so the same token counts and the same tokenizer.
    assert (
        written["splits"] == {name: {**split} for name, split in legacy["splits"].items()}
        and written["tokenizer"]["sha256"] == legacy["tokenizer"]["sha256"]
    )
    assert PreparedData.open(prepared.root).manifest == prepared.manifest
