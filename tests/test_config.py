"""Config validation fails before allocation, naming the field and a fix."""

from __future__ import annotations

import pytest

from engine.config import PRESETS, ConfigError, ModelConfig, get_preset, llama_ffn_dim


@pytest.mark.parametrize(
    ("field", "kwargs", "needle"),
    [
        ("model.n_heads", {"dim": 1000, "n_heads": 16}, "does not divide model.dim = 1000"),
        ("model.n_kv_heads", {"n_heads": 16, "n_kv_heads": 5}, "does not divide model.n_heads = 16"),
        ("model.n_kv_heads", {"n_heads": 4, "n_kv_heads": 8}, "does not divide model.n_heads = 4"),
        ("model.n_heads", {"dim": 96, "n_heads": 32}, "is odd"),
        ("model.dim", {"dim": 0}, "positive whole number"),
        ("model.vocab_size", {"vocab_size": 2.5}, "positive whole number"),
        ("model.rope_theta", {"rope_theta": -1.0}, "positive number"),
        ("model.tie_embeddings", {"tie_embeddings": "yes"}, "true or false"),
    ],
)
def test_bad_shape_names_the_field_and_a_fix(field, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        ModelConfig(**kwargs)
    assert err.value.field == field
    assert needle in str(err.value)
    assert "Fix" in str(err.value) or "must be" in str(err.value)


def test_divisibility_error_suggests_values_that_work():
    with pytest.raises(ConfigError) as err:
        ModelConfig(dim=1000, n_heads=16)
    suggested = [int(x) for x in str(err.value).split("from [")[1].split("]")[0].split(",")]
    assert all(1000 % h == 0 for h in suggested)


def test_sequence_length_above_the_maximum():
    cfg = ModelConfig(max_seq_len=512)
    cfg.check_seq_len(512)
    with pytest.raises(ConfigError) as err:
        cfg.check_seq_len(1024)
    assert err.value.field == "seq_len"
    assert "1024" in str(err.value) and "512" in str(err.value)


def test_model_rejects_an_input_longer_than_its_context():
    import torch

    from tests.helpers import random_model

    model = random_model(max_seq_len=16)
    with pytest.raises(ConfigError, match="sequence length = 17"):
        model(torch.zeros((1, 17), dtype=torch.long))


def test_unknown_key_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict({"dim": 256, "n_head": 8})
    assert err.value.field == "model.n_head"
    assert "did you mean 'n_heads'" in str(err.value)


def test_derived_sizes():
    cfg = ModelConfig(dim=4096, n_heads=32, n_kv_heads=8)
    assert cfg.ffn_dim == 11008 == llama_ffn_dim(4096)  # Llama 2 7B's width
    assert cfg.head_dim == 128 and cfg.kv_dim == 1024
    assert ModelConfig(n_heads=8).n_kv_heads == 8  # 0 means plain multi-head attention
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_presets():
    assert set(PRESETS) >= {"tiny", "seed-base", "seed-1b"}
    seed = PRESETS["seed-base"].model
    shape = (seed.n_layers, seed.dim, seed.n_heads, seed.n_kv_heads, seed.max_seq_len)
    assert shape == (12, 1024, 16, 4, 2048)
    assert 150e6 < seed.num_params() < 250e6  # not the 1.2B the original README claimed
    assert 1.1e9 < PRESETS["seed-1b"].model.num_params() < 1.3e9
    assert 2e6 < PRESETS["tiny"].model.num_params() < 10e6
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        get_preset("huge")


def test_memory_estimate_parts_add_up_and_grow_with_batch():
    cfg = PRESETS["seed-base"].model
    one, eight = cfg.training_memory_bytes(1), cfg.training_memory_bytes(8)
    assert one["weights"] == 4 * cfg.num_params() and one["optimizer"] == 8 * cfg.num_params()
    assert one["total"] == sum(v for k, v in one.items() if k != "total")
    assert eight["activations"] == 8 * one["activations"]
