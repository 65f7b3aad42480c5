"""The batch loader: window layout, exact resume, rank sharding, epochs, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config.errors import ConfigError
from engine.data.loader import TokenLoader

SEQ, BATCH = 8, 4


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """Token i has value i (mod 65536), so every window is recognisable from its first token."""
    path = tmp_path / "train.bin"
    np.arange(SEQ * 96 + 1, dtype=np.uint16).tofile(path)  # exactly 96 windows
    return path


def windows_of(x: torch.Tensor) -> list[int]:
    return (x[:, 0] // SEQ).tolist()


def test_batches_are_shifted_windows_of_the_file(token_file: Path) -> None:
    loader = TokenLoader(token_file, SEQ, BATCH, seed=1, dtype="uint16")
    x, y = loader.next_batch()
    assert x.shape == y.shape == (BATCH, SEQ) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)
    assert all(int(v) % SEQ == 0 for v in x[:, 0])
    assert torch.equal(x - x[:, :1], torch.arange(SEQ).expand(BATCH, SEQ))
    assert loader.n_windows == 96 and loader.batches_per_epoch == 24


def test_dtype_comes_from_the_manifest_next_to_the_file(tmp_path: Path) -> None:
    np.arange(SEQ * 8 + 1, dtype=np.uint32).tofile(tmp_path / "train.bin")
    (tmp_path / "manifest.json").write_text(json.dumps({"dtype": "uint32"}))
    x, _ = TokenLoader(tmp_path / "train.bin", SEQ, 2, shuffle=False).next_batch()
    assert x[0].tolist() == list(range(SEQ))


def test_exact_resume_mid_epoch_and_across_epochs(token_file: Path) -> None:
    reference = TokenLoader(token_file, SEQ, BATCH, seed=7)
    batches = [reference.next_batch() for _ in range(60)]  # 24 per epoch: crosses two epoch boundaries
    for cut in (0, 5, 23, 24, 37):
        first = TokenLoader(token_file, SEQ, BATCH, seed=7)
        for _ in range(cut):
            first.next_batch()
        state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
        resumed = TokenLoader(token_file, SEQ, BATCH, seed=7)
        resumed.load_state_dict(state)
        for expected_x, expected_y in batches[cut : cut + 10]:
            x, y = resumed.next_batch()
            assert torch.equal(x, expected_x) and torch.equal(y, expected_y)


def test_epochs_visit_every_window_once_in_a_seeded_order(token_file: Path) -> None:
    loader = TokenLoader(token_file, SEQ, BATCH, seed=3)
    epochs = [[w for _ in range(24) for w in windows_of(loader.next_batch()[0])] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(96))
    assert epochs[0] != epochs[1] and loader.epoch == 1
    other = TokenLoader(token_file, SEQ, BATCH, seed=4)
    assert [w for _ in range(24) for w in windows_of(other.next_batch()[0])] != epochs[0]
    again = TokenLoader(token_file, SEQ, BATCH, seed=3)
    assert [w for _ in range(24) for w in windows_of(again.next_batch()[0])] == epochs[0]
    plain = TokenLoader(token_file, SEQ, BATCH, shuffle=False)
    assert [w for _ in range(24) for w in windows_of(plain.next_batch()[0])] == list(range(96))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_see_disjoint_windows_that_cover_the_epoch(token_file: Path, world_size: int) -> None:
    seen = []
    steps = set()
    for rank in range(world_size):
        loader = TokenLoader(token_file, SEQ, BATCH, seed=11, rank=rank, world_size=world_size)
        steps.add(loader.batches_per_epoch)
        seen.append([w for _ in range(loader.batches_per_epoch) for w in windows_of(loader.next_batch()[0])])
    assert len(steps) == 1  # every rank runs the same number of steps
    flat = [w for rank_windows in seen for w in rank_windows]
    assert len(flat) == len(set(flat))  # disjoint
    assert sorted(flat) == list(range(96))  # 96 windows divide into 2 x 4 and 3 x 4: full coverage


def test_uneven_tail_is_dropped_so_ranks_stay_in_step(tmp_path: Path) -> None:
    path = tmp_path / "train.bin"
    np.arange(SEQ * 50 + 1, dtype=np.uint16).tofile(path)  # 50 windows, global batch 8: 2 left over
    seen = []
    for rank in range(2):
        loader = TokenLoader(path, SEQ, BATCH, seed=2, rank=rank, world_size=2)
        assert loader.batches_per_epoch == 6
        seen += [w for _ in range(6) for w in windows_of(loader.next_batch()[0])]
    assert len(set(seen)) == 48 and set(seen) <= set(range(50))


def test_resume_with_other_settings_is_refused(token_file: Path) -> None:
    state = TokenLoader(token_file, SEQ, BATCH, seed=1).state_dict()
    for kwargs, field in (
        ({"micro_batch": 2}, "micro_batch"),
        ({"seq_len": 4}, "seq_len"),
        ({"seed": 2}, "seed"),
    ):
        settings = {"seq_len": SEQ, "micro_batch": BATCH, "seed": 1, **kwargs}
        loader = TokenLoader(token_file, settings["seq_len"], settings["micro_batch"], seed=settings["seed"])
        with pytest.raises(ConfigError, match=f"taken with {field}") as info:
            loader.load_state_dict(state)
        assert info.value.field == f"data.{field}"


def test_too_little_data_and_bad_ranks_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    np.arange(20, dtype=np.uint16).tofile(path)
    with pytest.raises(ConfigError, match="holds 20 tokens, fewer than one batch"):
        TokenLoader(path, SEQ, BATCH)
    with pytest.raises(ConfigError, match=r"rank 2 is outside 0\.\.1"):
        TokenLoader(path, 2, 1, rank=2, world_size=2)
