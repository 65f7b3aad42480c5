"""Pilot tests of every console flow against real run directories (real writer, real engine stub).

The numbers written are the numbers shown; new events appear live; stop signals the right
process; quitting leaves runs running and re-opening rebuilds the same picture; every pane shows
hostile text literally; a 200k-event history paints a bounded sketch first and then fills in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from canvas_tui.screens.confirm import ConfirmScreen
from canvas_tui.screens.dashboard import DashboardScreen
from canvas_tui.screens.new_run import NewRunScreen
from canvas_tui.screens.runs import RunsScreen
from canvas_tui.widgets.checkpoints import CheckpointList
from canvas_tui.widgets.emissions_pane import EmissionsPane
from canvas_tui.widgets.gpu_pane import GpuPane
from canvas_tui.widgets.log_pane import LogPane
from canvas_tui.widgets.loss_plot import LossPlot, theme_rgb
from canvas_tui.widgets.run_header import RunHeader
from canvas_tui.widgets.system_pane import SystemPane
from engine.config.finetune import FinetuneConfig
from engine.runs import EventWriter, list_runs, run_status
from tests.console_fixtures import (
    FINETUNE_INFO,
    FROZEN_NOW,
    HOSTILE,
    REPO,
    fake_checkpoint,
    finetuning,
    finish,
    make_app,
    make_run,
    on_screen,
    open_dashboard,
    screen_text,
    select,
    start_stub,
    training,
    wait_running,
)
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------------------------- runs


async def test_runs_list_shows_the_numbers_written_and_new_runs_appear():
    make_run("alpha", total_steps=100, created=FROZEN_NOW - 7200, write=training(100))
    app = make_app(clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_for(pilot, lambda: screen.scans >= 1, what="first scan")
        text = screen_text(app)
        line = next(ln for ln in text.splitlines() if "alpha" in ln)
        for shown in ("finished", "100/100", "2.1099", "2.2099", "8.1k", "2h"):
            assert shown in line, (shown, line)
        # A run created elsewhere (the CLI, another console) appears within a scan or two.
        make_run("from-cli", status="created")
        await wait_for(pilot, lambda: "from-cli" in screen_text(app), timeout=5, what="new run row")
        # Filter.
        await pilot.press("slash", *"cli")
        await wait_for(pilot, lambda: [r.name for r in screen.visible_rows()] == ["from-cli"], what="filter")
        assert "alpha" not in screen_text(app)
        await pilot.press("escape")
        assert len(screen.visible_rows()) == 2


async def test_delete_asks_first():
    keep = make_run("keep-me", write=training(10))
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1)
        select(app, keep.id)
        await pilot.press("d")
        await wait_for(pilot, lambda: on_screen(app, ConfirmScreen))
        await pilot.press("n")
        await pilot.pause(0.2)
        assert keep.path.exists()
        await pilot.press("d")
        await wait_for(pilot, lambda: on_screen(app, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: not keep.path.exists(), what="deletion")
        await wait_for(pilot, lambda: "keep-me" not in screen_text(app), what="row removed")


async def test_stop_signals_the_right_process_and_resume_continues():
    a = start_stub("stub-a", steps=2000, step_time=0.02)
    b = start_stub("stub-b", steps=2000, step_time=0.02)
    try:
        wait_running(a)
        wait_running(b)
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(
                pilot, lambda: {r.status for r in app.screen.rows} == {"running"}, what="live rows"
            )
            select(app, b.id)
            await pilot.press("s")
            await wait_for(pilot, lambda: on_screen(app, ConfirmScreen))
            await pilot.press("y")
            await wait_for(pilot, lambda: run_status(b, tail=0).state == "stopped", timeout=15, what="stop")
            assert run_status(a, tail=0).state == "running"  # the other run was not touched
            await wait_for(pilot, lambda: {r.id: r.status for r in app.screen.rows}.get(b.id) == "stopped")
            assert b.latest_checkpoint() is not None  # a graceful stop checkpoints
            select(app, b.id)
            await pilot.press("r")
            await wait_for(pilot, lambda: run_status(b, tail=0).state == "running", timeout=15, what="resume")
    finally:
        finish(a)
        finish(b)


# ------------------------------------------------------------------------------------ dashboard


async def test_dashboard_shows_the_numbers_written_and_new_events_live():
    run = make_run(
        "live",
        status="finished",
        total_steps=100,
        write=training(100, final=None),
        log_lines=["engine says hello"],
    )
    # The list shows checkpoints that exist on disk (issue 15): the four the events name.
    run.checkpoints_dir.mkdir(exist_ok=True)
    for step in (25, 50, 75, 100):
        (run.checkpoints_dir / f"step-{step}.pt").write_bytes(b"w" * step)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        header = screen.query_one(RunHeader).text
        for shown in ("100/100", "loss 2.1099", "val 2.2099", "best 2.2099 @ 100", "5.8M", "bf16"):
            assert shown in header, (shown, header)
        assert "30.0/80.0 GiB" in screen.query_one(GpuPane).text and "80%" in screen.query_one(GpuPane).text
        assert "42%" in screen.query_one(SystemPane).text
        assert "1.000 kWh" in screen.query_one(EmissionsPane).text
        await wait_for(pilot, lambda: "engine says hello" in "\n".join(screen.query_one(LogPane).plain))
        await wait_for(pilot, lambda: screen.query_one(CheckpointList).row_count == 4, what="checkpoints")
        plot = screen.query_one(LossPlot)
        assert plot.plotted_points > 0 and len(plot.train) == 100
        # New events, appended by the real writer while the dashboard is open.
        with EventWriter(run.events_path) as w:
            w.emit("metric", step=101, loss=1.2345, lr=1e-4, tokens_per_s=9999.0)
            w.emit("eval", step=101, val_loss=1.1111)
            w.emit("gpu", index=1, util=3.0, mem_used=2**30, mem_total=16 * 2**30, temp=40.0)
            w.emit("log", message="a fresh log event", level="info")
            w.emit("checkpoint", step=101, path="checkpoints/last.pt", kind="last")
            w.emit("carbon", energy_kwh=2.5, emissions_kg=0.5, trees=0.02)
        (run.checkpoints_dir / "last.pt").write_bytes(b"w")
        with open(run.log_path, "a") as fh:
            fh.write("a fresh engine.log line\n")
        await wait_for(pilot, lambda: "loss 1.2345" in screen.query_one(RunHeader).text, what="metric")
        await wait_for(
            pilot,
            lambda: (
                "best 1.1110 @ 101" in screen.query_one(RunHeader).text
                or "best 1.1111 @ 101" in screen.query_one(RunHeader).text
            ),
            what="eval",
        )
        gpu_text = lambda: screen.query_one(GpuPane).text  # noqa: E731
        # One line per GPU since issue 15: "1 <bar>   3%  <bar> 1.0/16.0 GiB  40°C".
        await wait_for(pilot, lambda: "\n1 " in gpu_text() and " 3% " in gpu_text(), what="gpu")
        await wait_for(pilot, lambda: "2.500 kWh" in screen.query_one(EmissionsPane).text, what="carbon")
        plain = lambda: "\n".join(screen.query_one(LogPane).plain)  # noqa: E731
        await wait_for(pilot, lambda: "a fresh log event" in plain() and "a fresh engine.log line" in plain())
        await wait_for(pilot, lambda: screen.query_one(CheckpointList).row_count == 5, what="checkpoint")
        assert len(plot.train) == 101
        # Log scale and smoothing.
        await pilot.press("l")
        assert plot.log_y and app.settings.log_scale
        await pilot.press("m")
        assert plot.smoothing == 0.9


async def test_gpu_pane_says_why_there_is_no_gpu():
    plain = make_run("cpu-only", write=training(5, gpus=0, telemetry_every=0))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, plain)
        assert screen.query_one(GpuPane).text == "no GPU telemetry"
        with EventWriter(plain.events_path) as w:
            # The sampler's "unavailable" event. Written raw until the telemetry schema carries the
            # field: EventWriter rejects fields the schema does not know yet.
            w.emit("gpu_unavailable_probe") if False else None
        with open(plain.events_path, "a") as fh:
            fh.write(
                '{"v": 1, "t": 1.0, "type": "gpu", "index": 0, "unavailable": true, '
                '"reason": "no NVIDIA driver: libnvidia-ml.so not found"}\n'
            )
        await wait_for(pilot, lambda: "libnvidia-ml.so not found" in screen.query_one(GpuPane).text)


async def test_hostile_text_is_shown_literally_in_every_pane():
    run = make_run(
        "hostile",
        total_steps=10,
        meta={"name": HOSTILE, "kind": HOSTILE, "message": HOSTILE},
        write=training(10, eval_every=5, log_messages=[HOSTILE]),
        log_lines=[HOSTILE],
        status="failed",
    )
    with EventWriter(run.events_path) as w:
        w.emit("checkpoint", step=10, path=f"checkpoints/{HOSTILE}", kind=HOSTILE)
        w.emit("progress", phase=HOSTILE, done=1, total=2, unit=HOSTILE)
        w.emit("status", state="failed", message=HOSTILE)
        w.emit("gpu", index=-1, reason=HOSTILE)
        w.emit("gpu", index=3, util=1.0, name=HOSTILE)
    app = make_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1)
        assert HOSTILE[:40] in screen_text(app)  # runs table (name)
        screen = await open_dashboard(app, pilot, run)
        await wait_for(
            pilot,
            lambda: sum(HOSTILE in line for line in screen.query_one(LogPane).plain) >= 3,
            what="hostile log lines",
        )
        assert HOSTILE in screen.query_one(RunHeader).text
        # The checkpoint list shows what is on disk (no folder here), never an event's text.
        assert screen.query_one(CheckpointList).rows_shown == [("", "", "none yet", "", "")]
        assert "80%" in screen.query_one(GpuPane).text  # samples win over the reason
        # The GPU's name (in the pane's title since the one-line-per-GPU pane; clipped to its width).
        assert HOSTILE[:60] in screen.query_one(GpuPane).title_text
        app.notify(HOSTILE, markup=False)
        app.confirm_control("delete", str(run.path), HOSTILE)
        await wait_for(pilot, lambda: on_screen(app, ConfirmScreen))
        await pilot.pause(0.1)
        assert HOSTILE in str(app.screen.query_one("#question").content)
        assert "[@click=app.quit]x[/]" in screen_text(app)
        await pilot.press("n")
        assert app.is_running  # no [@click=app.quit] ran, no MarkupError
    gpu_only = make_run("gpu-reason", write=lambda w: w.emit("gpu", index=-1, reason=HOSTILE))
    app = make_app()
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await open_dashboard(app, pilot, gpu_only)
        assert HOSTILE in screen.query_one(GpuPane).text


async def test_long_history_paints_a_downsampled_sketch_first_then_fills_in(big_history):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_dashboard(big_history.path)
        await wait_for(pilot, lambda: on_screen(app, DashboardScreen))
        screen = app.screen

        def data_paints():  # a layout redraw before any data arrives paints "empty"
            return [p for p in screen.paints if p[0] != "empty"]

        await wait_for(pilot, lambda: bool(data_paints()), timeout=60, what="first paint with data")
        resolution, points = data_paints()[0]
        assert resolution == "sketch" and 0 < points <= 1200, screen.paints
        await wait_for(pilot, lambda: screen.view.resolution == "full", timeout=60, what="full history")
        await wait_for(pilot, lambda: screen.paints[-1][0] == "full", what="full repaint")
        assert len(screen.view.train) == 200_000
        assert 0 < screen.paints[-1][1] <= 1200  # still bounded: thinned for the plot's width
        assert "200000/200000" in screen.query_one(RunHeader).text


@pytest.fixture(scope="session")
def _big_history_file(tmp_path_factory) -> Path:
    """200k metric events (plus evals) written once by the real EventWriter."""
    path = tmp_path_factory.mktemp("big") / "events.jsonl"
    with EventWriter(path) as w:
        w.emit("run_info", total_steps=200_000, params=1000, precision="bf16", device="cpu", t=1.0)
        for step in range(1, 200_001):
            w.emit("metric", step=step, loss=2.0 + 1.0 / step, tokens_per_s=1000.0, t=1.0 + step)
            if step % 10_000 == 0:
                w.emit("eval", step=step, val_loss=2.1 + 1.0 / step, t=1.0 + step)
    return path


@pytest.fixture
def big_history(_big_history_file):
    import shutil

    run = make_run("long", total_steps=200_000)
    shutil.copyfile(_big_history_file, run.events_path)
    return run


# --------------------------------------------------------------------------- quit and re-attach


async def test_quitting_never_stops_a_run_and_reopening_reattaches():
    run = start_stub("survivor", steps=3000, step_time=0.02)
    try:
        wait_running(run)
        app = make_app(run_ref="survivor")  # `canvas console --run survivor`
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: on_screen(app, DashboardScreen))
            screen = app.screen
            await wait_for(pilot, lambda: (screen.view.step or 0) >= 5, what="steps")
            seen_step = screen.view.step
            await pilot.press("q")
        assert not app.is_running
        time.sleep(0.3)
        assert run_status(run, tail=0).state == "running" and run_status(run, tail=0).alive
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.screen.scans >= 1)
            select(app, run.id)
            await pilot.press("enter")
            await wait_for(pilot, lambda: on_screen(app, DashboardScreen))
            screen = app.screen
            await wait_for(pilot, lambda: screen.view.resolution == "full")
            # The whole history is back, from the run directory alone, and it keeps growing.
            assert screen.view.train.xs[0] == 1.0 and (screen.view.step or 0) >= seen_step
            step = screen.view.step
            await wait_for(pilot, lambda: (screen.view.step or 0) > step, what="live steps after re-attach")
            await pilot.press("c")  # checkpoint now, from the dashboard
            await wait_for(
                pilot,
                lambda: any(c.kind == "step" for c in screen.view.checkpoints),
                timeout=10,
                what="checkpoint-now",
            )
    finally:
        finish(run)


# ------------------------------------------------------------------------------------- new run


async def test_new_run_form_validates_inline_and_launches(monkeypatch):
    launched = {}

    def fake_launch(cfg, name=None, **kw):
        from engine.runs import create_run

        launched.update(cfg=cfg, name=name)
        return create_run("pretrain", name, cfg.to_dict())

    monkeypatch.setattr("canvas_tui.launching.launch_pretraining", fake_launch)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: on_screen(app, NewRunScreen))
        form = app.screen
        form.query_one("#f-model-n_heads").value = "7"
        await wait_for(pilot, lambda: "model.n_heads" in form.errors.get("f-model-n_heads", ""))
        error = form.query_one("#err-f-model-n_heads")
        assert error.display and "does not divide model.dim" in str(error.content)
        assert form.query_one("#f-model-n_heads").has_class("-invalid")
        assert "fix the highlighted field" in str(form.query_one("#estimate").content)
        await pilot.press("ctrl+l")
        await pilot.pause(0.2)
        assert not launched and isinstance(app.screen, NewRunScreen)
        for key, value in (
            ("model-n_heads", "8"),
            ("length", "5"),
            ("micro_batch", "2"),
            ("seq_len", "32"),
            ("name", "form-run"),
        ):
            form.query_one(f"#f-{key}").value = value
        await wait_for(pilot, lambda: form.config is not None and not form.errors, what="valid form")
        assert f"{form.config.model.num_params():,}" in str(form.query_one("#estimate").content)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard of new run")
        cfg = launched["cfg"]
        assert (cfg.max_steps, cfg.micro_batch, cfg.seq_len, launched["name"]) == (5, 2, 32, "form-run")
        assert app.screen.run.read_meta().name == "form-run"


@pytest.fixture
def launches(monkeypatch):
    """Record fine-tune launches instead of starting an engine: ``start_finetune_run`` is looked up in
    :mod:`engine.finetune.launch` at launch time, and the fake creates the real run directory."""
    from engine.finetune.launch import create_finetune_run

    calls: list[tuple] = []

    def fake_start(cfg, name=None, **kw):
        calls.append((cfg, name))
        return create_finetune_run(cfg, name)

    monkeypatch.setattr("engine.finetune.launch.start_finetune_run", fake_start)
    return calls


async def open_finetune_tab(app, pilot) -> NewRunScreen:
    app.action_new_run()
    await wait_for(pilot, lambda: on_screen(app, NewRunScreen))
    form = app.screen
    form.query_one("#new-tabs").active = "tab-finetune"
    await wait_for(pilot, lambda: form.base_hint_loaded, what="the base hint")
    return form


def error_under(form, field: str) -> str:
    box = form.query_one(f"#err-ft-{field}")
    return str(box.content) if box.display else ""


async def test_finetune_bad_value_shows_its_error_and_launches_nothing(launches):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_finetune_tab(app, pilot)
        form.query_one("#ft-lora_r").value = "0"
        form.query_one("#ft-lr").value = "fast"
        await wait_for(pilot, lambda: "ft-lora_r" in form.ft_errors, what="the lora_r error")
        # FinetuneConfig.validate's message, under the field it names; every bad field at once.
        assert "lora_r = 0 must be a whole number of at least 1" in error_under(form, "lora_r")
        assert form.query_one("#ft-lora_r").has_class("-invalid")
        assert "expected a float" in error_under(form, "lr")
        assert form.preflight_state == "invalid" and form.ft_config is None
        assert "fix the highlighted field" in str(form.query_one("#ft-check").content)
        await pilot.press("ctrl+l")
        await pilot.pause(0.3)
        assert isinstance(app.screen, NewRunScreen) and not form.launching
        assert launches == [] and list_runs() == []
        form.query_one("#ft-lora_r").value = "16"
        form.query_one("#ft-lr").value = "2e-4"
        await wait_for(pilot, lambda: "ft-lora_r" not in form.ft_errors and "ft-lr" not in form.ft_errors)
        assert not error_under(form, "lora_r")


async def test_finetune_base_that_is_not_a_model_shows_the_preflight_error(launches, tmp_path):
    folder = tmp_path / "notes[b]"
    folder.mkdir()
    (folder / "[bold red]weights[@click=app.quit]x").write_text("not a model")
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_finetune_tab(app, pilot)
        form.query_one("#ft-base").value = str(folder)
        await pilot.pause()
        await pilot.press("ctrl+l")  # at once: the launch's own preflight refuses it
        await wait_for(
            pilot, lambda: "ft-base" in form.ft_errors and not form.launching, what="the launch refused"
        )
        assert "is not a model folder: it has no config.json" in error_under(form, "base")
        assert "[bold red]weights[@click=app.quit]x" in error_under(form, "base")  # literally
        assert launches == [] and list_runs() == [] and isinstance(app.screen, NewRunScreen)
        # The background preflight says the same while the user is still typing.
        form.query_one("#ft-lora_r").value = "8"
        await wait_for(pilot, lambda: form.preflight_state == "error", what="the preflight")
        assert "is not a model folder" in error_under(form, "base")
        assert "not ready" in str(form.query_one("#ft-check").content)
        await pilot.press("ctrl+l")
        await pilot.pause(0.3)
        assert launches == [] and list_runs() == [] and app.is_running


async def test_finetune_launch_records_the_typed_values_and_opens_the_dashboard(launches, tmp_path):
    base_run = make_run("tiny-base", total_steps=10, write=training(10))
    fake_checkpoint(base_run, 10)
    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"hi {i}"},
                        {"role": "assistant", "content": f"hello {i}"},
                    ]
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_finetune_tab(app, pilot)
        # An empty base means the newest pre-training run with a checkpoint, and the form says which.
        hint = str(form.query_one("#hint-ft-base").content)
        assert "tiny-base (step-000010)" in hint and form.query_one("#hint-ft-base").display
        typed = {
            "name": "ft-form",
            "data": str(chats),
            "lora_r": "8",
            "lora_alpha": "16",
            "lora_dropout": "0.1",
            "lora_target": "q_proj,v_proj",
            "seq_len": "256",
            "micro_batch": "2",
            "grad_accum": "3",
            "lr": "1e-4",
            "length": "30",
        }
        for key, value in typed.items():
            form.query_one(f"#ft-{key}").value = value
        for key, value in (
            ("quantization", "8bit"),
            ("chat_template", "chatml"),
            ("packing", "true"),
            ("length_kind", "max_steps"),
        ):
            form.query_one(f"#ft-{key}").value = value
        # The check of the values just typed (the form's first check, of its defaults, may have
        # ended "ok" before the Changed events of these fields arrive).
        await wait_for(
            pilot,
            lambda: (
                form.preflight_state == "ok" and "5 conversations" in str(form.query_one("#ft-check").content)
            ),
            what="the preflight of the typed values",
        )
        check = str(form.query_one("#ft-check").content)
        assert "ready" in check and "5 conversations" in check and "LoRA r=8 on q_proj, v_proj" in check
        assert f"run {base_run.id}" in check
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        assert len(launches) == 1
        run = app.screen.run
        meta = run.read_meta()
        assert meta.kind == "finetune" and meta.name == "ft-form"
        cfg = meta.config
        assert {
            k: cfg[k]
            for k in (
                "data",
                "lora_r",
                "lora_alpha",
                "lora_dropout",
                "lora_target",
                "seq_len",
                "micro_batch",
                "grad_accum",
                "lr",
                "max_steps",
                "epochs",
                "quantization",
                "chat_template",
                "packing",
            )
        } == {
            "data": str(chats),
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.1,
            "lora_target": "q_proj,v_proj",
            "seq_len": 256,
            "micro_batch": 2,
            "grad_accum": 3,
            "lr": 1e-4,
            "max_steps": 30,
            "epochs": 0.0,
            "quantization": "8bit",
            "chat_template": "chatml",
            "packing": True,
        }
        # The base is pinned to what preflight checked: that run and its checkpoint.
        assert (cfg["base"], cfg["base_checkpoint"]) == (base_run.id, "step-000010")
        assert FinetuneConfig.from_dict(cfg).lora_r == 8  # run.json reproduces the run
        screen = app.screen
        await wait_for(pilot, lambda: "finetune" in screen.query_one(RunHeader).text, what="header")
        header = screen.query_one(RunHeader).text
        # from run.json until the engine writes run_info
        assert base_run.id in header and "8bit" in header and "chatml" in header


# --------------------------------------------------------------------------- fine-tune dashboards


async def test_finetune_dashboard_and_runs_list_show_what_it_trains():
    base_run = make_run("tiny-owt", total_steps=10, write=training(10))
    config = FinetuneConfig(base=base_run.id, data="embedded").to_dict()
    run = make_run("chat-v1", kind="finetune", total_steps=40, config=config, write=finetuning(40))
    app = make_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1, what="the runs list")
        row = next(r for r in app.screen.rows if r.id == run.id)
        assert (row.kind, row.trainable_params, row.params) == ("finetune", 32_768, 172_352)
        assert row.base == "tiny-owt" and row.quantization == "4bit nf4 double-quant"
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "LoRA 32.8k on tiny-owt" in text and "5.8M params" in text  # the wide "model" column
        screen = await open_dashboard(app, pilot, run)
        header = screen.query_one(RunHeader).text
        for shown in (
            "32,768 trainable of 172,352 (19.0%)",
            FINETUNE_INFO["base"],
            "4bit nf4 double-quant",
            "template chatml",
            "40/40",
            "best ",
        ):
            assert shown in header, (shown, header)
        assert "params" not in header  # a fine-tune shows what trains, not the pre-training count
        assert len(screen.query_one(LossPlot).train) == 40


async def test_finetune_header_shows_hostile_run_info_literally():
    info = dict(FINETUNE_INFO, base=HOSTILE, chat_template=HOSTILE, quantization=HOSTILE)
    run = make_run(
        "hostile-ft", kind="finetune", total_steps=5, config={"base": HOSTILE}, write=finetuning(5, info=info)
    )
    app = make_app()
    async with app.run_test(size=(330, 40)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        header = screen.query_one(RunHeader).text
        assert header.count(HOSTILE) == 3, header
        await pilot.resize_terminal(120, 40)  # a long base gives way (cut in the middle), literally still
        text = lambda: screen.query_one(RunHeader).text  # noqa: E731
        await wait_for(pilot, lambda: f"base {HOSTILE[:12]}" in text() and "…" in text())
        assert HOSTILE in text()  # the template, whole
        assert app.is_running


@pytest.mark.skipif(
    not (REPO / "engine" / "train" / "worker.py").exists(),
    reason="the training worker (engine/train/worker.py) is not in the checkout yet",
)
@pytest.mark.slow  # a real training run
@pytest.mark.usefixtures("shared_cache")  # the embedded corpus, prepared once per session
async def test_launch_a_real_tiny_run_from_the_form():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        runs_screen = app.screen
        app.action_new_run()
        await wait_for(pilot, lambda: on_screen(app, NewRunScreen))
        form = app.screen
        for key, value in (("length", "5"), ("micro_batch", "2"), ("seq_len", "32"), ("name", "real-tiny")):
            form.query_one(f"#f-{key}").value = value
        # ctrl+l's action at once, before the fields' Changed events have reached the form (what a
        # fast typist or a loaded machine does): the launch reads the fields, not the events so far.
        form.action_launch()
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=20)
        run = app.screen.run
        try:
            meta = run.read_meta()
            assert (meta.name, meta.config["max_steps"], meta.config["micro_batch"]) == ("real-tiny", 5, 2)
            # Back on the runs list (a covered list rescans when it is shown again), the run is there.
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is runs_screen)
            await wait_for(pilot, lambda: any(r.name == "real-tiny" for r in runs_screen.rows), timeout=10)
            # The engine process really started: its status is live or already final, never a
            # launch failure.
            await wait_for(
                pilot,
                lambda: run_status(run, tail=0).state in ("running", "finished"),
                timeout=30,
                what="the engine to start",
            )
        finally:
            finish(run)


# --------------------------------------------------------------------- themes, palette, help, keys


async def test_theme_is_remembered_between_sessions_and_plots_follow_it():
    make_run("colours", write=training(10))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "canvas-dark"
        dark = theme_rgb(app, "plot-train")
        app.theme = "canvas-light"
        await wait_for(pilot, lambda: app.settings.theme == "canvas-light")
        assert theme_rgb(app, "plot-train") != dark
        await app.workers.wait_for_complete()
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "canvas-light"  # read back from config_dir()/console.json
        app.theme = "canvas-high-contrast"
        await pilot.pause(0.1)
        await app.workers.wait_for_complete()
    app = make_app()
    async with app.run_test(size=(120, 40)):
        assert app.theme == "canvas-high-contrast"


async def test_palette_and_help_list_every_action():
    from canvas_tui.actions import ACTIONS
    from canvas_tui.screens.help import HelpScreen

    run = make_run("pal", write=training(5))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.scans >= 1, what="runs")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        # State-aware (issue 15): the selected run finished and none is marked for comparison.
        unavailable = {"stop_run", "resume_run", "checkpoint_run", "compare"}
        for action in ACTIONS:
            if action.scope in ("app", "runs") and action.action != "quit":
                shown = any(t.endswith(action.title) for t in titles)
                assert shown == (action.action not in unavailable), action.id
        assert {"theme: canvas-dark", "theme: canvas-light", "theme: canvas-high-contrast"} <= titles
        screen = await open_dashboard(app, pilot, run)
        titles = {c.title for c in app.get_system_commands(screen)}
        assert "run: Log scale" in titles and "run: Smoothing" in titles
        # A finished run: nothing to stop, checkpoint or resume (issue 15, state-aware actions).
        assert not {"run: Stop", "run: Checkpoint now", "run: Resume"} & titles
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: on_screen(app, HelpScreen))
        assert app.screen.query_one("#keys").row_count >= len(ACTIONS)
        await pilot.press("escape")
        await pilot.press("E")
        await wait_for(pilot, lambda: "No evaluations yet." in screen_text(app))


async def test_80x24_dashboard_collapses_to_one_readable_column():
    run = make_run("small-terminal", total_steps=100, write=training(100))
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_dashboard(app, pilot, run)
        assert screen.has_class("-narrow")
        for line in screen_text(app).splitlines():
            assert len(line) <= 80
        body = screen.query_one("#dash-body")
        assert body.max_scroll_y > 0  # panes scroll instead of being squeezed to nothing
        for pane in (GpuPane, SystemPane, EmissionsPane, LogPane, CheckpointList):
            assert screen.query_one(pane).size.height >= 3, pane


async def test_no_color_is_honoured(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app()
    async with app.run_test(size=(80, 24)):
        assert app.no_color


def test_plain_canvas_opens_the_console(monkeypatch, tmp_path):
    import canvas_tui.commands.console as console
    from canvas_tui.cli import main

    seen = {}

    def fake_run(args) -> int:
        seen["run"] = args.run
        return 0

    monkeypatch.setattr(console, "run", fake_run)
    assert main(["--home", str(tmp_path)]) == 0
    assert seen == {"run": None}
    seen.clear()
    assert main(["console", "--run", "abc"]) == 0
    assert seen == {"run": "abc"}


def test_console_without_a_terminal_says_so(capsys):
    from canvas_tui.cli import main

    assert main(["console"]) == 2  # pytest's stdin is not a TTY: an error, never a hang
    assert "needs an interactive terminal" in capsys.readouterr().err
