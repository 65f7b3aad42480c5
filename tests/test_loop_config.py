"""The bookkeeping keys both run kinds share are declared and validated once (LoopConfig), and the
key-reading helpers are public; the keys users write stay flat and each kind keeps its defaults."""

from __future__ import annotations

from dataclasses import fields

import pytest

from engine.config.errors import ConfigError
from engine.config.finetune import FinetuneConfig, load_finetune_config
from engine.config.loop import LoopConfig
from engine.config.settings import check_keys, coerce, parse_sets
from engine.config.train import TrainConfig, load_train_config

SHARED = {
    "data", "val_fraction", "seq_len", "micro_batch", "grad_accum", "max_steps", "epochs", "lr",
    "min_lr_ratio", "warmup_steps", "weight_decay", "beta1", "beta2", "grad_clip", "device", "seed",
    "log_every", "eval_every", "eval_batches", "checkpoint_every", "keep_checkpoints", "max_nonfinite",
    "telemetry_interval", "carbon_country", "sample_every", "sample_prompts",
}  # fmt: skip


def test_both_kinds_embed_the_loop_section_with_flat_keys():
    assert LoopConfig.keys() == SHARED
    for kind in (TrainConfig, FinetuneConfig):
        assert issubclass(kind, LoopConfig) and kind.keys() > SHARED
        assert set(kind().to_dict()) >= SHARED  # flat in run.json, not nested under a section
    assert not {"precision", "compile", "model"} & LoopConfig.keys()  # pre-training's own
    assert not {"compute_dtype", "lora_r", "base"} & LoopConfig.keys()  # the fine-tune's own


def test_each_kind_keeps_its_own_defaults_for_shared_keys():
    train, tune = TrainConfig(), FinetuneConfig()
    assert (train.lr, train.beta2, train.grad_clip, train.weight_decay) == (0.0, 0.95, 1.0, 0.1)
    assert (tune.lr, tune.beta2, tune.grad_clip, tune.weight_decay) == (2e-4, 0.999, 0.3, 0.0)
    assert (train.val_fraction, tune.val_fraction, train.epochs, tune.epochs) == (0.02, 0.05, 0.0, 1.0)
    assert TrainConfig.default("beta2") == 0.95 and FinetuneConfig.default("beta2") == 0.999


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("beta2=1", "beta2 = 1.0 must be in [0, 1). Fix: use beta1 = 0.9, beta2 = {beta2}."),
        (
            "log_every=0",
            "log_every = 0 must be a whole number of at least 1. Fix: set log_every to 1 or more.",
        ),
        (
            "warmup_steps=-2",
            "warmup_steps = -2 must be -1 (automatic) or a number of steps. Fix: use -1 or 0+.",
        ),
        ("carbon_country=XX", "carbon_country = 'XX' is not an ISO 3166 alpha-3 country code."),
        ("grad_clip=-1", "grad_clip = -1.0 cannot be negative. Fix: use 0 to disable grad_clip."),
    ],
)
def test_one_validation_gives_both_kinds_the_same_message(setting, needle):
    field = setting.partition("=")[0]
    kinds = [(lambda s: load_train_config("tiny", sets=s), 0.95)]
    kinds.append((lambda s: load_finetune_config(base="x", sets=s), 0.999))
    for load, beta2 in kinds:
        with pytest.raises(ConfigError) as err:
            load([setting])
        assert err.value.field == field
        assert needle.format(beta2=beta2) in str(err.value)


def test_the_key_helpers_are_public_and_say_what_to_type():
    with pytest.raises(ConfigError) as err:
        check_keys({"log_evry": 1}, {"log_every", "lr"}, "")
    assert err.value.field == "log_evry"
    assert (
        str(err.value) == "unknown setting 'log_evry'. Did you mean log_every? Known settings: log_every, lr."
    )
    assert coerce("max_steps", "1e3", 0) == 1000 and coerce("packing", "on", False) is True
    with pytest.raises(ConfigError, match=r"--set max_steps='1.5': expected a whole number"):
        coerce("max_steps", "1.5", 0)
    assert parse_sets(["lr=3e-4", "model.dim = 64"]) == {"lr": "3e-4", "model.dim": " 64"}


def test_the_loop_section_round_trips_through_each_kind():
    cfg = load_train_config("tiny", sets=["keep_checkpoints=7", "carbon_country=FRA"])
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and (again.keep_checkpoints, again.carbon_country) == (7, "FRA")
    tune = load_finetune_config(base="x", sets=["keep_checkpoints=2"])
    assert FinetuneConfig.from_dict(tune.to_dict()) == tune
    assert [f.name for f in fields(LoopConfig)] == [f.name for f in fields(FinetuneConfig)][: len(SHARED)]
