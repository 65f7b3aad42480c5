"""Issue 16, "Refused before a run exists": quiet exits on a closed pipe, type and range checks of
every config key (TOML, ``--set`` and the console's form alike), batch and context sizes refused
at preflight, and ``--name`` checks. Each test drives the real CLI where the issue says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runs.session import EventWriter
from engine.runs.store import create_run

REPO = Path(__file__).resolve().parents[1]


def cli(
    *args: str, stdout: int | None = subprocess.PIPE, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``python -m canvas_tui ARGS`` in a subprocess, with this test's CANVAS_HOME."""
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui", *args],
        cwd=REPO,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )


def finished_run(name: str, steps: int = 400):
    """A run with a long event file and engine log, so its commands print more than a pipe holds."""
    run = create_run("pretrain", name, {"preset": "tiny"})
    with EventWriter(run.events_path) as w:
        w.emit("status", state="running")
        w.emit("run_info", total_steps=steps, params=1234, precision="bf16", device="cpu")
        for step in range(1, steps + 1):
            w.emit("metric", step=step, loss=3.0 / step, lr=1e-3, tokens_per_s=2500.0, step_time=0.1)
            w.emit("log", level="warning", message=f"line {step} " + "x" * 200)
        w.emit("status", state="finished")
    run.log_path.write_text("".join(f"engine line {i}\n" for i in range(5000)))
    run.update_meta(status="finished", total_steps=steps)
    return run


# ----------------------------------------------------------------------------------------- pipes
@pytest.mark.parametrize(
    "args",
    [
        ["runs"],
        ["runs", "--json"],
        ["logs", "RUN"],
        ["logs", "RUN", "-n", "100000"],
        ["logs", "RUN", "--raw"],
        ["status", "RUN"],
        ["data", "sources"],
        ["--help"],
        ["train", "--help"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_closed_pipe_ends_every_command_quietly(args):
    """``canvas runs | head -1``: the reader is gone before the command writes. The command ends
    with 141 (128 + SIGPIPE, what a shell shows for `yes | head`) and prints no traceback, neither
    from the command nor from the interpreter's flush at exit."""
    for i in range(30):
        finished_run(f"run-{i}")
    run = finished_run("followed")
    args = [run.id if a == "RUN" else a for a in args]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away
    try:
        result = cli(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141


# ------------------------------------------------------------------------- types and ranges
def canvas(capsys, *args: str) -> tuple[int, str, str]:
    """The real CLI in this process (every parser and check; faster than a subprocess per case)."""
    from canvas_tui.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def runs_in_store() -> list[Path]:
    from engine import locations

    root = locations.runs_dir()
    return sorted(root.iterdir()) if root.exists() else []


@pytest.mark.parametrize(
    ("toml", "field", "says"),
    [
        ('lr = "fast"', "lr", 'lr = "fast" must be a number'),
        ("lr = nan", "lr", "lr = nan is not a finite number"),
        ("max_steps = true", "max_steps", "max_steps = true must be a whole number"),
        ("seed = 1e23", "seed", "seed = 1e+23 must be a whole number"),
        ("seed = -1", "seed", "seed = -1 cannot be negative"),
        ("micro_batch = [1, 2]", "micro_batch", "micro_batch = [1, 2] must be a whole number"),
        ("deterministic = 1", "deterministic", "deterministic = 1 must be true or false"),
        ("model = 3", "model", "model = 3 must be a table of model settings"),
        ("[model]\nrope_theta = inf", "model.rope_theta", "model.rope_theta = inf is not a finite number"),
        ("[model]\ndim = true", "model.dim", "model.dim = true must be a whole number"),
        ('data = ["missing-a.txt", "b"]', "data", "data source 'missing-a.txt': no such file"),
        ("data = 3", "data", "data = 3 must be a data spec"),
        ("preset = [1]", "preset", "preset = [1] must be text"),
    ],
)
def test_a_toml_key_of_the_wrong_type_or_range_is_refused_by_name(capsys, tmp_path, toml, field, says):
    """`canvas train --config` refuses each key of the wrong type with one paragraph naming the file,
    the key and an example, exit 2, before any run exists (no TypeError or AttributeError)."""
    config = tmp_path / "run.toml"
    config.write_text(toml + "\n")
    code, out, err = canvas(capsys, "train", "--config", str(config), "--set", "max_steps=1", "--detach")
    assert (code, out) == (2, "")
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    if field not in ("data", "seed"):  # a type error names the file; a range error the key and fix
        assert str(config) in err and "Fix:" in err
    assert runs_in_store() == []


@pytest.mark.parametrize(
    ("pair", "says"),
    [
        ("lr=nan", "--set lr=nan is not a finite number"),
        ("grad_clip=inf", "--set grad_clip=inf is not a finite number"),
        ("seed=1e23", "--set seed=99999999999999991611392 is too large"),
        ("max_steps=1e30", "--set max_steps=1000000000000000019884624838656 is too large"),
        ("model.norm_eps=inf", "--set model.norm_eps=inf is not a finite number"),
        ("seed=-3", "seed = -3 cannot be negative"),
    ],
)
def test_a_set_value_out_of_range_is_refused(capsys, pair, says):
    code, out, err = canvas(capsys, "train", "--set", pair, "--detach")
    assert (code, out) == (2, "") and says in err and err.count("\n") == 1
    assert runs_in_store() == []


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("lora_r = true", "lora_r = true must be a whole number"),
        ("telemetry_interval = inf", "telemetry_interval = inf is not a finite number"),
        ("lora_alpha = true", "lora_alpha = true must be a whole number"),
        ("max_steps = true", "max_steps = true must be a whole number"),
    ],
)
def test_a_finetune_toml_key_of_the_wrong_type_is_refused(capsys, tmp_path, toml, says):
    config = tmp_path / "ft.toml"
    config.write_text(toml + "\n")
    code, out, err = canvas(capsys, "finetune", "--config", str(config), "--detach")
    assert (code, out) == (2, "") and says in err and str(config) in err and err.count("\n") == 1
    assert runs_in_store() == []


def test_the_console_form_refuses_non_finite_numbers():
    """The New-run form goes through the same checks as --set: a learning rate of nan is refused
    on the lr field (it used to be accepted and train on nothing but NaNs)."""
    from canvas_tui import forms
    from engine.config.errors import ConfigError

    for raw in ("nan", "inf"):
        with pytest.raises(ConfigError) as err:
            forms.pretrain_config({**forms.preset_values("tiny"), "lr": raw})
        assert err.value.field == "lr" and "not a finite number" in str(err.value)


def test_the_readme_data_sources_tables_work(capsys, tmp_path):
    """The README's `[[data.sources]]` TOML form is read (it crashed with "'dict' object has no
    attribute 'strip'"), including a path with a comma, which only this form can name; the engine's
    reader gets the same sources back from the config."""
    from engine.data.spec import spec_from_obj

    odd = tmp_path / "notes, vol 1"
    odd.mkdir()
    (odd / "a.txt").write_text("Some text to train on.\n" * 50)
    config = tmp_path / "run.toml"
    config.write_text(
        f'[[data.sources]]\npath = "{odd / "a.txt"}"\nlimit = 3\n\n[[data.sources]]\npreset = "embedded"\n'
    )
    code, out, err = canvas(capsys, "train", "--config", str(config), "--dry-run")
    assert code == 0, err
    data = json.loads(out)["data"]
    spec = spec_from_obj(data)
    assert [(s.kind, s.target, s.limit) for s in spec.sources] == [
        ("local", str(odd / "a.txt"), 3),
        ("embedded", "embedded", None),
    ]
    config.write_text('[[data.sources]]\npath = "README.md"\n')
    code, out, err = canvas(capsys, "train", "--config", str(config), "--dry-run")
    assert code == 0 and json.loads(out)["data"] == "README.md"  # the string form when it says the same


# ------------------------------------------------------------------- batch and context sizes
def test_micro_batch_zero_and_negative_are_refused_with_a_fix_that_works(capsys):
    for value in ("0", "-1"):
        code, out, err = canvas(capsys, "train", "--set", f"micro_batch={value}", "--detach")
        assert (code, out) == (2, "") and "micro_batch" in err and "at least 1" in err
        assert "0 for automatic" not in err and "micro_batch=8" in err  # the fix names a value that works
    assert runs_in_store() == []


def test_seq_len_above_the_presets_context_is_refused_with_the_fix(capsys, tmp_path):
    """`--set seq_len=100000` used to raise the model's context silently, then fail on the data."""
    code, out, err = canvas(capsys, "train", "--set", "seq_len=100000", "--detach")
    assert (code, out) == (2, "")
    assert "seq_len = 100000 is longer than the model's context model.max_seq_len = 256" in err
    assert "--set model.max_seq_len=100000" in err and runs_in_store() == []
    # doing what the message says works
    code, out, err = canvas(
        capsys, "train", "--set", "seq_len=512", "--set", "model.max_seq_len=512", "--dry-run"
    )
    assert code == 0 and json.loads(out)["seq_len"] == 512 and json.loads(out)["model"]["max_seq_len"] == 512


def header_only_base(folder: Path, context: int = 128) -> Path:
    """A base folder a fine-tune's preflight accepts without torch: a Llama config.json and a
    safetensors file whose header lists one projection (preflight reads headers, never weights)."""
    import struct

    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": context}
        )
    )
    header = json.dumps(
        {"model.layers.0.self_attn.q_proj.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}
    ).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    return folder


def test_a_finetune_seq_len_above_the_bases_context_is_refused(capsys, tmp_path):
    base = header_only_base(tmp_path / "base")
    code, out, err = canvas(capsys, "finetune", "--base", str(base), "--set", "seq_len=4096", "--detach")
    assert (code, out) == (2, "")
    assert "seq_len = 4096 is longer than the base's context of 128 tokens" in err
    assert "--set seq_len=128" in err and runs_in_store() == []


# ---------------------------------------------------------------------------------- run names
def test_a_refused_name_creates_nothing(capsys):
    for bad in ("bad name!", "20261127-153012-123-22f9d472", "-dash"):
        code, out, err = canvas(capsys, "train", f"--name={bad}", "--set", "max_steps=1", "--detach")
        assert (code, out) == (2, "") and "run name" in err and err.count("\n") == 1
    assert runs_in_store() == []


def test_a_duplicate_name_is_refused_naming_the_run_that_has_it(capsys, tmp_path):
    """Both an explicit name and another run's automatic ``<kind>-<id suffix>`` name are taken."""
    base = header_only_base(tmp_path / "base", context=4096)
    first = create_run("pretrain", "my-run")
    auto = create_run("pretrain")
    before = runs_in_store()
    for taken, holder in (("my-run", first), (auto.read_meta().name, auto)):
        code, out, err = canvas(capsys, "train", "--name", taken, "--set", "max_steps=1", "--detach")
        assert (code, out) == (2, "")
        assert (
            f"run name {taken!r} is taken by run {holder.id}" in err and "Fix: choose another --name" in err
        )
        code, out, err = canvas(capsys, "finetune", "--base", str(base), "--name", taken, "--detach")
        assert code == 2 and f"is taken by run {holder.id}" in err
    assert runs_in_store() == before
    from engine.runs.errors import RunStoreError

    with pytest.raises(RunStoreError, match="is taken by run"):
        create_run("eval", "my-run")


def test_the_short_hash_at_the_end_of_an_id_names_the_run(capsys):
    """Like a git short hash: the random part of an id (``22f9d472``), or a unique start of it of at
    least 4 characters, is accepted wherever a run is named."""
    from engine.runs.store import resolve_run

    a = finished_run("alpha", steps=3)
    b = finished_run("beta", steps=3)
    short = a.id.rsplit("-", 1)[-1]
    assert resolve_run(short) == a and resolve_run(short[:5]) == a
    code, out, err = canvas(capsys, "status", short)
    assert code == 0 and a.id in out and b.id not in out
    code, out, err = canvas(capsys, "logs", b.id.rsplit("-", 1)[-1], "--events", "-n", "1")
    assert code == 0 and out.strip()
    code, out, err = canvas(capsys, "status", short[:3])  # too short to be a hash: not found, not guessed
    assert code == 2 and "no run matches" in err and "short hash" in err


def test_a_huge_micro_batch_is_refused_with_a_fix_that_does_what_it_says(capsys, tmp_path):
    """`--set micro_batch=1e9` used to be accepted (the run failed on the data later) with a message
    that suggested "0 for automatic", which is refused; the fix given now works as written."""
    code, out, err = canvas(capsys, "train", "--set", "micro_batch=1e9", "--detach")
    assert (code, out) == (2, "") and runs_in_store() == []
    assert "micro_batch = 1,000,000,000 sequences of 256 tokens is more than one micro-batch can hold" in err
    assert "0 for automatic" not in err and "--set micro_batch=8, and raise grad_accum" in err
    code, out, err = canvas(capsys, "train", "--set", "micro_batch=8", "--set", "grad_accum=8", "--dry-run")
    assert code == 0 and json.loads(out)["grad_accum"] == 8
    base = header_only_base(tmp_path / "base", context=512)
    code, out, err = canvas(capsys, "finetune", "--base", str(base), "--set", "micro_batch=1e9", "--detach")
    assert (code, out) == (2, "") and "--set micro_batch=4, and raise grad_accum" in err
    assert runs_in_store() == []
