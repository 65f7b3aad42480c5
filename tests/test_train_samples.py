"""Samples during training (``sample_every``, ``sample_prompts``): a real tiny run writes ``sample``
events at exactly the right steps without changing a single loss, bad keys are refused before a run
exists, and the dashboard shows the latest samples literally."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from canvas_tui.app import CanvasApp
from canvas_tui.viewmodel import build_view
from canvas_tui.widgets.samples_pane import SamplesPane
from engine.config.errors import ConfigError
from engine.config.finetune import load_finetune_config
from engine.config.train import load_train_config
from engine.finetune.preflight import preflight as finetune_preflight
from engine.runs import EventWriter
from engine.runs.events import Sample, decode
from engine.runs.format import format_event
from engine.runs.reader import EventReader
from engine.train import sampler as sampler_mod
from engine.train.launch import create_training_run
from engine.train.preflight import preflight
from engine.train.worker import run_training
from tests.console_fixtures import HOSTILE, REPO, make_run, open_dashboard, training
from tests.helpers import small_config
from tests.waiting import pilot_wait_until as wait_for

SETS = [
    "micro_batch=2",
    "seq_len=32",
    "log_every=1",
    "eval_every=3",
    "eval_batches=1",
    "model.n_layers=2",
    "model.dim=64",
    "model.n_heads=4",
    "model.n_kv_heads=2",
    "max_steps=6",
]


def records(run, kind: str) -> list[dict]:
    return [r for r in EventReader(run.events_path).read_new() if r["type"] == kind]


def train(*extra: str):
    cfg = preflight(load_train_config("tiny", sets=[*SETS, *extra])).config
    run = create_training_run(cfg)
    run_training(run, install_signals=False)
    assert run.read_meta().status == "finished", run.read_meta().message
    return run


# ----------------------------------------------------------------------------------- the engine


@pytest.mark.usefixtures("shared_cache")
def test_samples_at_exactly_every_n_steps_and_losses_bit_identical():
    plain = train()
    sampled = train("sample_every=2")
    samples = records(sampled, "sample")
    # Three default prompts (openings of validation documents) at steps 2, 4 and 6, nothing else.
    assert [(s["step"], s["index"]) for s in samples] == [(k, i) for k in (2, 4, 6) for i in range(3)]
    assert all(s["text"].strip() and s["prompt"].strip() for s in samples)
    assert all(0 < s["new_tokens"] <= sampler_mod.NEW_TOKENS and s["temperature"] == 0.0 for s in samples)
    assert len({s["prompt"] for s in samples}) == 3  # three different documents
    assert not records(plain, "sample")
    # Sampling changes nothing the run computes: every loss and validation loss, bit for bit.
    losses = [(m["step"], m["loss"], m["grad_norm"]) for m in records(plain, "metric")]
    assert len(losses) == 6
    assert [(m["step"], m["loss"], m["grad_norm"]) for m in records(sampled, "metric")] == losses
    vals = [e["val_loss"] for e in records(plain, "eval")]
    assert len(vals) == 2 and [e["val_loss"] for e in records(sampled, "eval")] == vals


@pytest.mark.usefixtures("shared_cache")
def test_a_prompts_file_is_read_and_each_line_continued(tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def main(\n\n   \nThe module [bold]x[/]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    run = train("sample_every=3", "sample_prompts=prompts.txt")
    assert run.read_meta().config["sample_prompts"] == str(prompts)  # absolute: the engine reads it anywhere
    samples = records(run, "sample")
    assert [(s["step"], s["prompt"]) for s in samples] == [
        (3, "def main("),
        (3, "The module [bold]x[/]"),
        (6, "def main("),
        (6, "The module [bold]x[/]"),
    ]
    assert all(s["text"] for s in samples)


def test_the_sampler_leaves_mode_and_every_rng_as_they_were(monkeypatch):
    from engine.model.llama import CausalLM

    torch.manual_seed(0)
    model = CausalLM(small_config())
    model.train()
    seen = {}

    def generate(m, prompts, params, pad_id=0):  # a generator that draws from the global RNG
        seen["training"] = m.training
        seen["grad"] = torch.is_grad_enabled()
        torch.rand(100)
        return [[5, 6, 7] for _ in prompts]

    monkeypatch.setattr(sampler_mod, "generate", generate)

    class Recorder:
        def __init__(self) -> None:
            self.events: list = []

        def emit(self, kind, **fields):
            self.events.append((kind, fields))

        def log(self, message, level="info"):
            self.events.append(("log", {"message": message}))

    rec = Recorder()
    prompts = [sampler_mod.SamplePrompt("a", (1, 2)), sampler_mod.SamplePrompt("b", (1, 3, 4))]
    sampler = sampler_mod.Sampler(model, prompts, lambda ids: "|".join(map(str, ids)), rec, eos_id=7)
    before = torch.get_rng_state()
    sampler(10)
    assert torch.equal(torch.get_rng_state(), before)
    assert seen == {"training": False, "grad": False} and model.training
    assert [(k, f["step"], f["prompt"], f["text"], f["new_tokens"]) for k, f in rec.events] == [
        ("sample", 10, "a", "5|6", 3),  # the EOS that ended it is not text
        ("sample", 10, "b", "5|6", 3),
    ]


def test_document_openings_split_on_eos(tmp_path):
    import numpy as np

    path = tmp_path / "val.bin"
    np.array([3, 4, 5, 0, 0, 6, 7, 0, 8, 9, 10, 11], dtype=np.uint16).tofile(path)
    assert sampler_mod.document_openings(path, "uint16", 0, 3, 2) == [[3, 4], [6, 7], [8, 9]]
    assert sampler_mod.document_openings(path, "uint16", 0, 5, 9) == [[3, 4, 5], [6, 7], [8, 9, 10, 11]]


# ----------------------------------------------------------------------------------- the keys


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["sample_every=-1"], "sample_every = -1 must be a whole number of steps (0 turns samples off)."),
        (["sample_every=2.5"], "expected a whole number"),
    ],
)
def test_bad_sample_every_is_refused_by_name(sets, needle):
    with pytest.raises(ConfigError) as err:
        load_train_config("tiny", sets=sets)
    assert err.value.field == "sample_every" and needle in str(err.value)
    assert "Fix:" in str(err.value)


def test_a_missing_or_empty_prompts_file_is_refused_at_preflight(tmp_path):
    missing = tmp_path / "nope.txt"
    cfg = load_train_config("tiny", sets=["sample_every=5", f"sample_prompts={missing}"])
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.field == "sample_prompts" and "no such file" in str(err.value)
    assert str(missing) in str(err.value) and "Fix: point sample_prompts at a text file" in str(err.value)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    cfg = load_train_config("tiny", sets=["sample_every=5", f"sample_prompts={empty}"])
    with pytest.raises(ConfigError, match="holds no prompt") as err:
        preflight(cfg)
    assert err.value.field == "sample_prompts"
    # Without sample_every the file is never read.
    assert preflight(load_train_config("tiny", sets=[f"sample_prompts={missing}"])).config.sample_every == 0


def test_toml_sets_the_keys_and_a_fine_tune_checks_them_too(tmp_path):
    (tmp_path / "p.txt").write_text("hello\n")
    toml = tmp_path / "run.toml"
    toml.write_text(f'sample_every = 50\nsample_prompts = "{tmp_path / "p.txt"}"\n')
    cfg = load_train_config(None, toml)
    assert (cfg.sample_every, cfg.sample_prompts) == (50, str(tmp_path / "p.txt"))
    assert cfg.read_sample_prompts() == ["hello"]
    tune = load_finetune_config(base="x", sets=["sample_every=10", f"sample_prompts={tmp_path / 'gone.txt'}"])
    with pytest.raises(ConfigError, match="no such file") as err:
        finetune_preflight(tune)  # refused before the base is even looked up
    assert err.value.field == "sample_prompts"


def test_cli_takes_the_keys_and_refuses_a_bad_one_before_a_run_exists(tmp_path):
    env = {**os.environ, "CANVAS_HOME": str(tmp_path)}

    def canvas_train(*args):
        return subprocess.run(
            [sys.executable, "-m", "canvas_tui", "train", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=60,
        )

    dry = canvas_train("--set", "sample_every=50", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert '"sample_every": 50' in dry.stdout
    bad = canvas_train("--set", "sample_every=10", "--set", f"sample_prompts={tmp_path / 'gone.txt'}")
    assert bad.returncode == 2 and "sample_prompts" in bad.stderr and "no such file" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ----------------------------------------------------------------------------------- the event


def test_the_event_decodes_and_formats_on_one_line():
    event = decode({"type": "sample", "step": 40, "prompt": "Once", "text": " upon\na [b]time", "index": 1})
    assert isinstance(event, Sample) and (event.step, event.index, event.new_tokens) == (40, 1, None)
    assert format_event(event) == "sample @ step 40: 'Once' -> ' upon\\na [b]time'"
    view = build_view(
        [
            {"type": "sample", "step": 2, "prompt": "p0", "text": "old", "index": 0},
            {"type": "sample", "step": 4, "prompt": "p1", "text": "new1", "index": 1},
            {"type": "sample", "step": 4, "prompt": "p0", "text": "new0", "index": 0},
        ]
    )
    assert [(s.step, s.text) for s in view.latest_samples()] == [(4, "new0"), (4, "new1")]


# ----------------------------------------------------------------------------------- the dashboard


@pytest.mark.anyio
async def test_dashboard_shows_the_latest_samples_literally_at_80x24():
    def write(w: EventWriter) -> None:
        training(20, eval_every=10, final=None)(w)
        w.emit("sample", step=10, prompt="old prompt", text="old text", index=0)
        w.emit("sample", step=20, prompt="def f(", text=HOSTILE, index=0)

    run = make_run("sampled", total_steps=40, write=write, status="running")
    plain = make_run("no-samples", total_steps=20, write=training(20, eval_every=10))
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_dashboard(app, pilot, plain)
        pane = screen.query_one(SamplesPane)
        assert not pane.display and not screen.has_class("-samples")  # the layout without samples
        app.pop_screen()
        screen = await open_dashboard(app, pilot, run)
        pane = screen.query_one(SamplesPane)
        assert pane.display and screen.has_class("-samples")
        assert pane.text == "def f(" + HOSTILE  # verbatim: no markup parsed, nothing dropped
        assert pane.border_title == "Samples @ step 20/20" and "old text" not in pane.text
        pane.scroll_visible(animate=False)
        await pilot.pause()
        assert pane.region.width > 0 and pane.region.height >= 3
        with EventWriter(run.events_path) as w:  # a new step's samples replace the shown ones
            w.emit("sample", step=30, prompt="[/INST]", text="[@click=app.quit]x[/]", index=0)
        await wait_for(pilot, lambda: pane.step == 30, what="the new sample")
        assert pane.text == "[/INST][@click=app.quit]x[/]"
        assert app.is_running
