"""Run configs: preset < TOML < --data < --set, every key checked by name, errors before launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.config.train import TrainConfig, load_train_config

REPO = Path(__file__).resolve().parents[1]
ISSUE_KEYS = [
    "max_steps",
    "epochs",
    "max_tokens",
    "checkpoint_every",
    "eval_every",
    "seed",
    "lr",
    "micro_batch",
    "grad_accum",
    "seq_len",
    "compile",
    "precision",
]


def test_every_key_the_issue_names_is_settable():
    values = {
        "max_steps": "7",
        "epochs": "2.5",
        "max_tokens": "1e6",
        "checkpoint_every": "3",
        "eval_every": "4",
        "seed": "5",
        "lr": "1e-3",
        "micro_batch": "2",
        "grad_accum": "3",
        "seq_len": "128",
        "compile": "true",
        "precision": "fp32",
    }
    cfg = load_train_config("tiny", sets=[f"{k}={v}" for k, v in values.items()])
    assert set(values) == set(ISSUE_KEYS)
    assert (cfg.max_steps, cfg.epochs, cfg.max_tokens) == (7, 2.5, 1_000_000)
    assert (cfg.checkpoint_every, cfg.eval_every, cfg.seed, cfg.lr) == (3, 4, 5, 1e-3)
    assert (cfg.micro_batch, cfg.grad_accum, cfg.seq_len, cfg.compile, cfg.precision) == (
        2,
        3,
        128,
        "true",
        "fp32",
    )


def test_precedence_preset_then_toml_then_data_then_set(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "tiny"\nlr = 5e-4\nmicro_batch = 2\ndata = "a.txt"\n[model]\nn_layers = 3\n')
    cfg = load_train_config(None, toml, ["lr=1e-4"], data="b.txt")
    assert cfg.lr == 1e-4 and cfg.micro_batch == 2 and cfg.data == "b.txt" and cfg.model.n_layers == 3
    assert cfg.seq_len == 256 and cfg.max_steps == 600  # untouched preset values
    # Naming one run length replaces the preset's default length.
    assert load_train_config("tiny", sets=["epochs=2"]).max_steps == 0


def test_saved_config_reproduces_the_run():
    cfg = load_train_config("tiny", sets=["model.dim=128", "lr=1e-3", "max_tokens=5e5"])
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert cfg.model.ffn_dim == 512  # re-derived for the new width


@pytest.mark.parametrize(
    ("sets", "field", "needle"),
    [
        (["lrr=1e-3"], "lrr", "Did you mean lr?"),
        (["model.n_head=4"], "model.n_head", "Did you mean model.n_heads?"),
        (["max_steps=ten"], "max_steps", "expected a whole number"),
        (["compile=maybe"], "compile", "must be auto, true or false"),
        (["precision=fp8"], "precision", "is not one of auto, bf16, fp16, fp32"),
        (["model.n_heads=7"], "model.n_heads", "does not divide model.dim = 256"),
        (["seq_len=512", "model.max_seq_len=256"], "seq_len", "longer than the model's context"),
        (["tokens_per_step=1000"], "tokens_per_step", "not a multiple of micro_batch x seq_len"),
        (["lr"], "--set", "is not KEY=VALUE"),
        (["carbon_country=Britain"], "carbon_country", "ISO 3166"),
    ],
)
def test_bad_settings_name_their_field(sets, field, needle):
    with pytest.raises(ConfigError) as err:
        load_train_config("tiny", sets=sets)
    assert err.value.field == field and needle in str(err.value)


def test_cli_refuses_bad_input_before_creating_a_run(tmp_path):
    env = {**os.environ, "CANVAS_HOME": str(tmp_path)}

    def train(*args):
        return subprocess.run(
            [sys.executable, "-m", "canvas_tui", "train", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=60,
        )

    for args, needle in [
        (["--set", "n_layers=4"], "unknown setting 'n_layers'"),
        (["--data", "/no/such/file.txt"], "/no/such/file.txt"),
        (["--set", "precision=fp16"], "precision = fp16"),
        (["--config", str(tmp_path / "missing.toml")], "does not exist"),
    ]:
        out = train(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert needle in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    dry = train("--preset", "seed-base", "--set", "max_tokens=1e9", "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["model"]["dim"] == 1024
