"""Real run directories for the console tests, written with the real run store and event writer.

Everything is deterministic when asked: fixed run ids, creation times and event timestamps, so
snapshot tests see the same screen every time. ``HOSTILE`` is the text every pane must show
literally (STYLE.md §7).
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.runs import EventWriter, RunKind, create_run, launch_detached, wait_for_end
from engine.runs.store import RunDir
from tests.waiting import pilot_wait_until, wait_until

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "tests" / "engine_stub.py"

#: The frozen "now" of the snapshot tests: 2026-11-27 12:00:00 UTC.
FROZEN_NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc).timestamp()

HOSTILE = "[bold red]not bold[/] [/INST] [@click=app.quit]x[/] [link=file:///etc]y[/link] [/"


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC (the times a snapshot shows do not depend on the machine's zone)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def make_run(
    name: str | None = None,
    *,
    kind: str = "pretrain",
    status: str = "finished",
    run_id: str | None = None,
    created: float | None = None,
    total_steps: int | None = None,
    write: Callable[[EventWriter], None] | None = None,
    log_lines: list[str] | None = None,
    meta: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> RunDir:
    """A run directory as an engine that already ended would leave it.

    A ``kind`` this version does not know (``"data"``) stands for a newer engine's run: it is
    created as a pre-training run and then relabelled, as that engine would have written it.
    """
    known = kind in {k.value for k in RunKind}
    run = create_run(
        kind if known else RunKind.PRETRAIN, name, {"preset": "tiny"} if config is None else config
    )
    if not known:
        run.update_meta(kind=kind)
    if run_id is not None:
        target = run.path.parent / run_id
        os.rename(run.path, target)
        run = RunDir(target)
        run.update_meta(id=run_id)
    fields: dict[str, Any] = {"status": status, "total_steps": total_steps, "host": "testhost"}
    if created is not None:
        fields.update(created=iso(created), started=iso(created), ended=iso(created + 600))
    fields.update(meta or {})
    run.update_meta(**fields)
    if write is not None:
        with EventWriter(run.events_path) as writer:
            write(writer)
    if log_lines:
        with open(run.log_path, "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in log_lines))
    return run


def loss_at(step: int, total: int) -> float:
    return 2.0 + 6.0 * math.exp(-4.0 * step / total)


def training(
    steps: int = 100,
    *,
    t0: float = FROZEN_NOW - 3600,
    every: int = 1,
    eval_every: int = 25,
    gpus: int = 1,
    telemetry_every: int = 10,
    final: str | None = "finished",
    log_messages: list[str] | None = None,
) -> Callable[[EventWriter], None]:
    """An event stream like the trainer's: run_info, metrics, evals, checkpoints, telemetry."""

    def write(w: EventWriter) -> None:
        dt = 1.0
        w.emit("status", state="running", message="pid 4242 on testhost", t=t0)
        w.emit(
            "run_info",
            total_steps=steps,
            params=5_770_496,
            precision="bf16",
            device="cuda:0",
            config={"preset": "tiny"},
            t=t0,
        )
        for message in log_messages or []:
            w.emit("log", message=message, level="warning", t=t0)
        for step in range(1, steps + 1):
            t = t0 + step * dt
            if step % every == 0 or step == steps:
                w.emit(
                    "metric",
                    step=step,
                    loss=loss_at(step, steps),
                    lr=2e-3 * min(1.0, step / 10),
                    tokens_per_s=8000.0 + step,
                    step_time=0.25,
                    tokens=step * 2048,
                    t=t,
                )
            if eval_every and step % eval_every == 0:
                w.emit(
                    "eval",
                    step=step,
                    val_loss=loss_at(step, steps) + 0.1,
                    perplexity=math.exp(loss_at(step, steps) + 0.1),
                    t=t,
                )
                w.emit(
                    "checkpoint",
                    step=step,
                    path=f"checkpoints/step-{step}.pt",
                    kind="step",
                    val_loss=loss_at(step, steps) + 0.1,
                    t=t,
                )
            if telemetry_every and step % telemetry_every == 0:
                for i in range(gpus):
                    w.emit(
                        "gpu",
                        index=i,
                        util=80.0 + i,
                        mem_used=(30 + i) * 2**30,
                        mem_total=80 * 2**30,
                        temp=65.0,
                        power=250.0,
                        power_limit=400.0,
                        t=t,
                    )
                w.emit(
                    "system",
                    cpu_pct=42.0,
                    ram_used=12 * 2**30,
                    ram_total=64 * 2**30,
                    rss=3 * 2**30,
                    disk_free=500 * 2**30,
                    t=t,
                )
                w.emit("carbon", energy_kwh=0.01 * step, emissions_kg=0.002 * step, trees=0.001 * step, t=t)
        if final:
            w.emit("status", state=final, message="", t=t0 + steps * dt + 1)

    return write


def start_stub(name: str, steps: int = 400, step_time: float = 0.05, *extra: str) -> RunDir:
    """A live engine process (tests/engine_stub.py), detached like a real run."""
    run = create_run("pretrain", name, {"stub": True, "steps": steps})
    argv = [
        sys.executable,
        str(STUB),
        str(run.path),
        "--steps",
        str(steps),
        "--step-time",
        str(step_time),
        *extra,
    ]
    launch_detached(run, argv)
    return run


def wait_running(run: RunDir, timeout: float = 15.0) -> None:
    from engine.runs import run_status

    wait_until(
        lambda: run_status(run, tail=0).state == "running",
        timeout,
        what=f"run {run.id} to be running",
        interval=0.05,
    )


def finish(run: RunDir) -> None:
    """Make sure a stub engine is gone at the end of a test."""
    from engine.runs import kill_run, run_status

    if run_status(run, tail=0).is_live:
        kill_run(run)
        wait_for_end(run, 10)


# ------------------------------------------------------------------------------ driving the console
def make_app(**kw: Any):
    """The console for a Pilot test: it rescans every 0.1 s unless told otherwise."""
    from canvas_tui.app import CanvasApp

    kw.setdefault("poll_interval", 0.1)
    return CanvasApp(**kw)


def snapshot_app(theme: str | None = None):
    """The console for a snapshot: a frozen clock for ages, and one scan (no refresh mid-shot)."""
    from canvas_tui.app import CanvasApp

    made = CanvasApp(clock=lambda: FROZEN_NOW, poll_interval=60.0)
    if theme is not None:
        made.theme = theme  # before mount: not saved to the settings
    return made


def on_screen(app, cls) -> bool:
    """The app shows a mounted screen of type ``cls`` (push_screen changes the stack before mount)."""
    return isinstance(app.screen, cls) and app.screen.is_mounted


def select(app, run_id: str) -> None:
    """Put the Runs screen's cursor on ``run_id``."""
    table = app.screen.query_one("#runs-table")
    table.move_cursor(row=table.get_row_index(run_id), animate=False)


def dashboard_painted(app) -> bool:
    """The dashboard is up with the run's whole history, its status, and everything drawn."""
    from canvas_tui.screens.dashboard import DashboardScreen

    screen = app.screen
    return (
        isinstance(screen, DashboardScreen)
        and screen.is_mounted
        and screen.view.resolution == "full"
        and screen.status is not None
        and not screen._dirty
    )


async def open_dashboard(app, pilot, run: RunDir | Path, *, settle: float = 0.0):
    """Open the dashboard of ``run`` (a run directory or its path) and wait for its first full
    paint (:func:`dashboard_painted`); then let the layout settle for ``settle`` seconds."""
    app.open_dashboard(run.path if isinstance(run, RunDir) else run)
    await pilot_wait_until(pilot, lambda: dashboard_painted(app), what="the dashboard's first paint")
    await pilot.pause(settle or None)
    return app.screen


@asynccontextmanager
async def dashboard_of(run: RunDir | Path, size: tuple[int, int], *, settle: float = 0.2, **app_kw: Any):
    """A console of ``size`` (:func:`make_app` with ``app_kw``) showing the dashboard of ``run``,
    painted: ``async with dashboard_of(run, (160, 48)) as (pilot, screen): ...``."""
    app = make_app(**app_kw)
    async with app.run_test(size=size) as pilot:
        yield pilot, await open_dashboard(app, pilot, run, settle=settle)


async def scroll_to_telemetry(pilot) -> None:
    """Scroll the open dashboard so that its telemetry (GPU, system) panes are at the top."""
    screen = pilot.app.screen
    screen.query_one("#dash-body").scroll_to_widget(screen.query_one("#telemetry"), animate=False, top=True)
    await pilot.pause(0.3)


def screen_text(app) -> str:
    """The current screen as plain text, one line per terminal row (what a user reads)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)


def fake_checkpoint(run: RunDir, step: int, *, layers: int = 2, dim: int = 8) -> Path:
    """A checkpoint folder of ours (``model_config.json`` + ``model.safetensors``) without torch.

    The weights are zeros of a tiny Llama's shapes, written in the safetensors layout (an 8-byte
    header size, the JSON header, the data): enough for the fine-tune preflight, which reads only
    the header, to accept the run as a base and list its projections.
    """
    from engine.train.layout import checkpoint_name

    folder = run.checkpoints_dir / checkpoint_name(step)
    folder.mkdir(parents=True, exist_ok=True)
    shapes = {"model.embed_tokens.weight": [64, dim], "lm_head.weight": [64, dim], "model.norm.weight": [dim]}
    for i in range(layers):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"model.layers.{i}.self_attn.{proj}.weight"] = [dim, dim]
        for proj in ("gate_proj", "up_proj", "down_proj"):
            shapes[f"model.layers.{i}.mlp.{proj}.weight"] = [dim, dim]
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))
    (folder / "model_config.json").write_text(
        json.dumps({"dim": dim, "n_layers": layers, "n_heads": 2, "vocab_size": 64})
    )
    return folder


#: A fine-tune's run_info as the engine writes it (engine/finetune/trainer.py).
FINETUNE_INFO = {
    "params": 172_352,
    "trainable_params": 32_768,
    "base": "our model (run 20261127-100000-000-0000aaaa, step-000200)",
    "quantization": "4bit nf4 double-quant",
    "chat_template": "chatml",
    "lora_targets": "q_proj,k_proj,v_proj,o_proj",
    "precision": "bf16",
    "device": "cuda:0",
}


def finetuning(
    steps: int = 40,
    *,
    t0: float = FROZEN_NOW - 1800,
    eval_every: int = 10,
    info: dict[str, Any] | None = None,
    final: str | None = "finished",
) -> Callable[[EventWriter], None]:
    """A fine-tune's event stream: run_info with the LoRA fields, metrics, evals, a checkpoint."""

    def write(w: EventWriter) -> None:
        w.emit("status", state="running", message="pid 4343 on testhost", t=t0)
        w.emit("run_info", total_steps=steps, config={"lora_r": 16}, t=t0, **(info or FINETUNE_INFO))
        for step in range(1, steps + 1):
            t = t0 + step * 2.0
            w.emit(
                "metric",
                step=step,
                loss=1.0 + 2.0 * math.exp(-3.0 * step / steps),
                lr=2e-4,
                tokens_per_s=1500.0,
                step_time=2.0,
                tokens=step * 4096,
                t=t,
            )
            if eval_every and step % eval_every == 0:
                val = 1.2 + 2.0 * math.exp(-3.0 * step / steps)
                w.emit("eval", step=step, val_loss=val, perplexity=math.exp(val), t=t)
        w.emit("checkpoint", step=steps, path=f"checkpoints/step-{steps:06d}", kind="last", t=t0 + 2 * steps)
        if final:
            w.emit("status", state=final, message="", t=t0 + 2 * steps + 1)

    return write
