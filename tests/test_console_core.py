"""The console's Textual-free core: view model, history sketch, runs tracker, forms, settings,
and import hygiene (``import canvas_tui.app`` never imports torch)."""

from __future__ import annotations

import json
import math
import socket

import pytest

from canvas_tui import forms
from canvas_tui.fmt import fmt_age, fmt_bytes_pair, fmt_loss, fmt_trainable, sparkline
from canvas_tui.history import read_full, sketch_history
from canvas_tui.runs_model import RunsTracker
from canvas_tui.settings import Settings, load_settings, save_settings, settings_path
from canvas_tui.viewmodel import RunView, Series, Smoother, build_view, thin
from engine.config.errors import ConfigError
from engine.config.finetune import CHAT_TEMPLATES, QUANTIZATIONS, FinetuneConfig
from engine.runs import EventReader, EventWriter
from engine.runs.events import Gpu, Metric
from tests.console_fixtures import FROZEN_NOW, finetuning, make_run, training


def records_of(run):
    return EventReader(run.events_path).read_events()


def test_view_model_numbers_are_the_numbers_written():
    run = make_run("vm", total_steps=100, write=training(100, eval_every=25))
    view = build_view(records_of(run))
    assert len(view.train) == 100 and view.train.last() == (100.0, pytest.approx(2.0 + 6.0 * math.exp(-4.0)))
    assert [int(x) for x in view.val.xs] == [25, 50, 75, 100]
    assert view.best_val[0] == 100 and view.best_val[1] == pytest.approx(2.0 + 6.0 * math.exp(-4.0) + 0.1)
    assert view.total_steps == 100 and view.step == 100
    assert view.gpus[0].latest.util == 80.0 and len(view.gpus[0].util) == 10
    assert view.carbon is not None and view.carbon.energy_kwh == pytest.approx(1.0)
    assert [c.step for c in view.checkpoints] == [25, 50, 75, 100]
    assert view.step_rate() == pytest.approx(1.0)  # one step a second in the fixture
    assert view.status is not None and view.status.state == "finished"


def test_view_model_non_finite_losses_and_gpu_unavailable(tmp_path):
    with EventWriter(tmp_path / "events.jsonl") as w:
        w.emit("metric", step=1, loss=2.0)
        w.emit("metric", step=2, loss=float("nan"))
        w.emit("metric", step=3, loss=float("inf"))
    view = build_view(EventReader(tmp_path / "events.jsonl").read_new())
    assert len(view.train) == 1 and view.nonfinite == [(2, "nan"), (3, "inf")]
    # The sampler's "no GPU" event: index -1 with the reason.
    with EventWriter(tmp_path / "gpu.jsonl") as w:
        w.emit("gpu", index=-1, reason="no NVIDIA driver [/]")
    view = build_view(EventReader(tmp_path / "gpu.jsonl").read_new())
    assert view.gpu_unavailable == "no NVIDIA driver [/]" and not view.gpus


def test_eta_from_recent_step_rate():
    view = RunView()
    view.ingest([{"type": "run_info", "total_steps": 1000}])
    view.ingest([{"type": "metric", "step": s, "loss": 1.0, "t": 100.0 + s / 4} for s in range(1, 101)])
    assert view.step_rate() == pytest.approx(4.0)
    assert view.eta_seconds() == pytest.approx(900 / 4.0)


def test_thin_is_bounded_and_keeps_spikes():
    xs = [float(i) for i in range(200_000)]
    ys = [1.0] * 200_000
    ys[123_457] = 50.0  # a loss spike must survive downsampling
    tx, ty = thin(xs, ys, 400)
    assert len(tx) <= 402 and tx[0] == 0.0 and tx[-1] == 199_999.0 and 50.0 in ty
    assert thin([1.0, 2.0], [3.0, 4.0], 400) == ([1.0, 2.0], [3.0, 4.0])


def test_smoother_incremental_equals_full():
    s = Series()
    for i in range(50):
        s.append(i, float(i % 7))
    sm = Smoother()
    sm.apply(s, 0.9)
    for i in range(50, 80):
        s.append(i, float(i % 5))
    incremental = list(sm.apply(s, 0.9))
    full = list(Smoother().apply(s, 0.9))
    assert incremental == pytest.approx(full)
    assert list(Smoother().apply(s, 0.0)) == list(s.ys)


def test_sketch_reads_a_bounded_sample_and_the_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.emit("run_info", total_steps=30_000)
        for step in range(1, 30_001):
            w.emit("metric", step=step, loss=1.0 + 1.0 / step)
        w.emit("gpu", index=0, util=99.0)
    records, size = sketch_history(path, samples=200, tail_bytes=16 << 10)
    metrics = [r for r in records if isinstance(r, Metric)]
    assert 100 < len(metrics) < 600  # 200 samples + the tail's lines, not 30k
    assert metrics[0].step < 1000 and metrics[-1].step == 30_000
    assert isinstance(records[-1], Gpu) and size == path.stat().st_size
    reader, seen = EventReader(path), []
    assert read_full(reader, seen.extend, chunk=64 << 10) and len(seen) == 30_002


def test_runs_tracker_rows_and_crash_detection():
    done = make_run("done", total_steps=100, created=FROZEN_NOW - 60, write=training(100))
    # run.json says running, but the recorded process does not exist: the truth is "crashed".
    crashed = make_run(
        "gone",
        status="running",
        meta={"pid": 999_999_99, "pid_start_time": 1.0, "host": socket.gethostname()},
    )
    tracker = RunsTracker()
    rows = {r.name: r for r in tracker.scan()}
    row = rows["done"]
    assert (row.step, row.total_steps, row.status) == (100, 100, "finished")
    assert row.best_val == pytest.approx(2.0 + 6.0 * math.exp(-4.0) + 0.1)
    assert row.tokens_per_s == 8100.0 and len(row.spark) > 10
    assert fmt_age(row.age(FROZEN_NOW)) == "1m"
    assert rows["gone"].status == "crashed"
    # Incremental: only what was appended is read on the next scan.
    with EventWriter(done.events_path) as w:
        w.emit("metric", step=101, loss=1.5, tokens_per_s=1.0)
        w.emit("eval", step=101, val_loss=1.25)
    row = {r.name: r for r in tracker.scan()}["done"]
    assert (row.step, row.last_val, row.best_val) == (101, 1.25, 1.25)
    assert crashed.id in {r.id for r in tracker.scan()}


def test_settings_round_trip_and_broken_file():
    assert load_settings() == Settings()
    save_settings(Settings(theme="canvas-light", smoothing=0.9, keymap={"runs.stop": "x"}))
    assert load_settings() == Settings(theme="canvas-light", smoothing=0.9, keymap={"runs.stop": "x"})
    settings_path().write_text("{not json")
    assert load_settings() == Settings()
    settings_path().write_text(json.dumps({"theme": 3, "smoothing": 7, "unknown": 1}))
    assert load_settings() == Settings()


def test_form_builds_a_validated_config_and_names_the_bad_field():
    values = forms.preset_values("tiny")
    values.update({"length": "5", "micro_batch": "2", "seq_len": "32", "lr": "1e-3", "data": "embedded"})
    cfg = forms.pretrain_config(values)
    assert (cfg.max_steps, cfg.micro_batch, cfg.seq_len, cfg.lr) == (5, 2, 32, 1e-3)
    est = forms.estimate(cfg)
    assert est.params == cfg.model.num_params() and est.memory["total"] > est.memory["weights"] > 0
    for key, bad, field in (
        ("model.n_heads", "7", "model.n_heads"),
        ("seq_len", "4096", "seq_len"),
        ("lr", "abc", "lr"),
        ("length", "0", "max_steps"),
        ("data", "a,,b", "data"),
        ("micro_batch", "", "micro_batch"),
    ):
        broken = dict(values, **{key: bad})
        with pytest.raises(ConfigError) as info:
            forms.pretrain_config(broken)
        assert info.value.field == field, (key, info.value)
    values = dict(values, length_kind="epochs", length="2")
    assert (forms.pretrain_config(values).epochs, forms.pretrain_config(values).max_steps) == (2.0, 0)


def test_finetune_form_defaults_are_the_configs_and_errors_name_the_field():
    values = forms.finetune_values()
    assert forms.finetune_config(values) == FinetuneConfig()  # the defaults are derived, not copied
    assert {v for _, v in forms.QUANT_CHOICES} == set(QUANTIZATIONS)
    assert {v for _, v in forms.TEMPLATE_CHOICES} == set(CHAT_TEMPLATES)
    shown = [k for k, _ in (*forms.FINETUNE_FIELDS, *forms.FINETUNE_CHOICE_FIELDS)]
    assert sorted(forms.FINETUNE_ORDER) == sorted(shown) and set(shown) <= set(FinetuneConfig().to_dict())
    for key, bad, slot in (
        ("lora_r", "0", "lora_r"),
        ("lora_dropout", "2", "lora_dropout"),
        ("lora_target", " , ", "lora_target"),
        ("data", "", "data"),
        ("lr", "abc", "lr"),
        ("length", "0", "length"),
        ("seq_len", "", "seq_len"),
        ("micro_batch", "1.5", "micro_batch"),
        ("quantization", "3bit", "quantization"),
        ("data", "embedded?format=x", "data"),
    ):
        with pytest.raises(ConfigError) as info:
            forms.finetune_config(dict(values, **{key: bad}))
        assert forms.finetune_slot(info.value.field) == slot, (key, info.value)
    # validate() stops at the first problem; the form still names every bad field at once.
    errors = forms.finetune_errors(dict(values, lora_r="0", lora_dropout="2", data=""))
    assert set(errors) == {"lora_r", "lora_dropout", "data"} and "--set" not in "".join(errors.values())
    assert forms.finetune_errors(values) == {}
    cfg = forms.finetune_config(
        dict(values, length_kind="max_steps", length="30", packing="true", base=" some/model ")
    )
    assert (cfg.max_steps, cfg.epochs, cfg.packing, cfg.base) == (30, 0.0, True, "some/model")


def test_finetune_rows_and_trainable_share():
    base = make_run("tiny-owt", write=training(5))
    ft = make_run(
        "chat", kind="finetune", config=FinetuneConfig(base=base.id).to_dict(), write=finetuning(10)
    )
    folder = make_run("chat2", kind="finetune", config=FinetuneConfig(base="/models/llama-7b").to_dict())
    rows = {r.name: r for r in RunsTracker().scan()}
    assert rows["chat"].model() == "LoRA 32.8k on tiny-owt" and rows["chat"].matches("owt")
    assert rows["chat"].id == ft.id and rows["chat"].quantization == "4bit nf4 double-quant"
    assert rows["chat2"].model() == "LoRA - on llama-7b" and rows["chat2"].quantization == "4bit"
    assert folder.id == rows["chat2"].id
    assert rows["tiny-owt"].model() == "5.8M params" and rows["tiny-owt"].base == ""
    assert fmt_trainable(32_768, 172_352) == "32,768 trainable of 172,352 (19.0%)"
    assert fmt_trainable(4_194_304, 6_742_609_920) == "4,194,304 trainable of 6,742,609,920 (0.062%)"
    assert fmt_trainable(None, 10) == "-"


def test_formatting_helpers():
    assert fmt_loss("nan") == "nan" and fmt_loss(None) == "-" and fmt_loss(2.5) == "2.5000"
    assert fmt_bytes_pair(30 * 2**30, 80 * 2**30) == "30.0/80.0 GiB"
    assert sparkline([1, 2, 3, 4], 4) == "▁▃▆█" and len(sparkline(list(range(100)), 10)) == 10
