"""The named steps of the packing pipeline, each checked on its own."""

from __future__ import annotations

import pytest

from engine.config.errors import ConfigError
from engine.data.packing import mix_counts, mix_sources, split_held_out
from engine.data.progress import StageTimer, ignore_progress
from engine.data.spec import parse_spec

datasets = pytest.importorskip("datasets")


def table(n: int, prefix: str = "doc") -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": [f"{prefix} {i}" for i in range(n)]})


def test_split_held_out_is_seeded_disjoint_and_keeps_corpus_order() -> None:
    ds = table(50)
    train, val = split_held_out(ds, 0.1, seed=3)
    assert val is not None and (len(train), len(val)) == (45, 5)
    train_ids = [int(t.split()[1]) for t in train["text"]]
    val_ids = [int(t.split()[1]) for t in val["text"]]
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)
    assert sorted(train_ids + val_ids) == list(range(50))
    again_val = split_held_out(ds, 0.1, seed=3)[1]
    assert again_val is not None and again_val["text"] == val["text"]
    other = split_held_out(ds, 0.1, seed=4)[1]
    assert other is not None and other["text"] != val["text"]


def test_split_held_out_leaves_a_lone_document_for_the_token_cut() -> None:
    ds = table(1)
    train, val = split_held_out(ds, 0.1, seed=0)
    assert val is None and train["text"] == ["doc 0"]
    assert split_held_out(table(4), 0.0, seed=0)[1] is None
    assert len(split_held_out(table(2), 0.01, seed=0)[1] or []) == 1  # at least one held out


def test_mix_sources_takes_each_weighted_share_and_refuses_an_empty_mix() -> None:
    spec = parse_spec("0.75*a.jsonl,0.25*b.jsonl")
    parts = [table(30, "a"), table(30, "b")]
    counts = mix_counts(spec, [len(p) for p in parts])
    assert counts == [30, 10]
    timer = StageTimer("load", ignore_progress)
    mixed = mix_sources(spec, parts, counts, seed=0, load_timer=timer)
    texts = mixed["text"]
    assert len(texts) == 40 and sum(t.startswith("a") for t in texts) == 30
    with pytest.raises(ConfigError, match="gives no documents"):
        mix_sources(parse_spec("a.jsonl"), [table(0)], [0], seed=0, load_timer=timer)
