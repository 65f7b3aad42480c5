"""How much does the console cost? CPU while following a live run, and time to first paint.

(a) **CPU while following.** A detached writer process (this script with ``--stream``) plays an
    engine through the real :func:`engine.runs.run_context` / ``EventWriter``: a ``metric`` every
    0.1 s plus a ``gpu``, ``system`` and ``carbon`` event every second and a ``log`` every 5 s
    (about ten events a second). The real console app runs headless in *this* process
    (``App.run_test``) showing that run's dashboard; once its history is loaded, the process's CPU
    time (``time.process_time``: every thread of the console, the file worker included, and
    nothing of the writer) is measured over ``--seconds`` (30) and printed as % of one core.
    Goal: < 3 %.

(b) **First paint of a long history.** A run with 200k ``metric`` events (written once with the
    real ``EventWriter``) is opened in a fresh console; the time from ``open_dashboard`` to the
    dashboard's first loss-plot paint with data (``screen.paints``, resolution not ``"empty"``)
    is measured ``--repeats`` (3) times; the median is printed. Goal: < 1 s.

(c) **First paint of the console.** A fresh console process (this script with ``--child paint``)
    opens on an empty store; its CPU time since the process started (imports included,
    ``time.process_time``) is printed once the Runs screen has been drawn: the median of
    ``--repeats`` (3) such processes. ``--only start`` runs this part alone. Goal: <= 0.4 CPU-s.

(d) **A store of many finished runs.** ``--runs`` (90) finished runs with ``--run-mb`` (1.7) MB of
    events each (a trainer-like stream written once with the real ``EventWriter``, then copied).
    A fresh console process (``--child list``) opens on it: the CPU-seconds and wall seconds from
    the app's start until every row is in the table, what the screen said before (it must say it
    is scanning, never "No runs yet"), then the idle CPU of the runs list over ``--idle`` (10)
    seconds, as % of one core. Measured twice: a console that has never seen the store, then a
    second one. Goals: rows <= 1 CPU-s, idle <= 1 %. The idle CPU of an empty runs list is
    measured the same way.

(e) **CPU while following an 8-GPU run** (``--only gpu8``). Like (a), with the writer
    (``--stream-gpus 8``) playing a multi-GPU trainer: a ``metric`` every 0.1 s with every field
    (loss, lr, grad norm, tokens/s, step time, tokens, peak memory, MFU), an ``eval`` every 100
    steps, ``gpu`` events for ``--gpus`` (8) devices plus ``system`` and ``carbon`` every second (5x
    the engine's default ``telemetry_interval``) and a ``log`` every 5 s: about 21 events a second.
    The dashboard is shown at 160x48 (every pane visible). Printed: CPU-seconds per wall second
    as % of one core, and how many redraws of the plots and of the GPU pane it did. Goal: <= 3 %.

(f) **A keystroke in a form** (``--only keys``). The New run form is opened in the real app
    (``App.run_test``), the learning-rate field focused, and ``--keys`` (20) digits are typed one
    by one through the Pilot's key path (the key event posted as the terminal driver posts it),
    each awaited until the form has recorded the new value, the app is idle and the repaint the key
    scheduled is done. ``Pilot.press``/``pause`` also post a callback to every widget of the screen
    and wait for each: ~16 ms a key on this form by itself (235 widgets, measured on an idle form),
    which no real keystroke causes, so it is left out. Printed: main-thread CPU
    (``time.thread_time`` of the thread the app runs on: the key's handling and the repaint) per
    keystroke, median and worst; then the one debounced validation of the tab that follows the
    burst, measured the same way. ``--form`` types in another form instead (``eval-launch``: its
    samples field; ``notes``: the notes editor's tags, ``notes-text``: its text area;
    ``chat-picker``: the model path; ``all``: each in turn, one line each). Goal: <= 20 ms a key.

Everything lives in a temporary ``CANVAS_HOME``. Run:

    .venv/bin/python bench/bench_console.py
    .venv/bin/python bench/bench_console.py --seconds 10 --repeats 5
    .venv/bin/python bench/bench_console.py --only start --repeats 5 --idle 1
    .venv/bin/python bench/bench_console.py --only list --runs 90 --idle 20
    .venv/bin/python bench/bench_console.py --only gpu8 --seconds 30
    .venv/bin/python bench/bench_console.py --only keys --keys 40
    .venv/bin/python bench/bench_console.py --only keys --form all
    .venv/bin/python bench/bench_console.py --tiny      # smoke mode (what the tests run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import Sizes

SIZE = (120, 40)
#: One busy GPU's telemetry, as the engine's sampler reports it (the single-GPU streams below).
ONE_GPU = dict(
    index=0, util=80.0, mem_used=30 * 2**30, mem_total=80 * 2**30, temp=65.0, power=250.0, power_limit=400.0
)


# ------------------------------------------------------------------------------ the writer
def trainer_metric(step: int, loss_scale: float, step_time: float, **extra) -> dict:
    """The fields of a trainer-like ``metric`` event at ``step`` (the live stream of (a) and the
    stored runs of (d)): a loss falling from 8 towards 2 over about ``loss_scale`` steps."""
    return dict(
        step=step,
        loss=2.0 + 6.0 / (1 + step / loss_scale),
        lr=2e-3,
        tokens_per_s=8000.0 + step % 100,
        step_time=step_time,
        tokens=step * 2048,
        **extra,
    )


def stream(run_dir: str, seconds: float) -> None:
    """Play an engine for ``seconds``: ~10 events/s through the real run context and writer."""
    from engine.runs import run_context

    with run_context(run_dir) as session:
        total = int(seconds * 10) + 1000
        session.emit(
            "run_info",
            total_steps=total,
            params=5_770_496,
            precision="bf16",
            device="cpu",
            config={"bench": True},
        )
        start = time.monotonic()
        step = 0
        while not session.stop_requested and time.monotonic() - start < seconds:
            step += 1
            metric = trainer_metric(step, loss_scale=50, step_time=0.1)
            session.emit("metric", **metric)
            if step % 10 == 0:
                session.emit("gpu", **ONE_GPU)
                session.emit(
                    "system",
                    cpu_pct=42.0,
                    ram_used=12 * 2**30,
                    ram_total=64 * 2**30,
                    rss=3 * 2**30,
                    disk_free=500 * 2**30,
                )
                session.emit("carbon", energy_kwh=1e-4 * step, emissions_kg=2e-5 * step, trees=1e-5 * step)
            if step % 50 == 0:
                session.log(f"step {step} loss {metric['loss']:.4f}")
            next_at = start + step * 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))


# ------------------------------------------------------------------------------ (a) CPU
def launch_writer(run, seconds: float, *options: str) -> None:
    """Start this script as ``run``'s detached engine (``--stream``, with ``options``), playing
    for a minute more than the ``seconds`` measured."""
    from engine.runs import launch_detached

    script = [sys.executable, str(Path(__file__).resolve()), *options]
    launch_detached(run, [*script, "--stream", str(run.path), "--seconds", str(seconds + 60)])


async def following(screen, seconds: float) -> tuple[float, float, int]:
    """The process's CPU-seconds and the wall seconds of ``seconds`` spent following on the
    dashboard ``screen``, and the metric points it gained (at least 5 a second: it kept up)."""
    points = len(screen.view.train.xs)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    gained = len(screen.view.train.xs) - points
    if gained < seconds * 5:
        raise SystemExit(f"the dashboard followed only {gained} metric events in {wall:.0f} s")
    return cpu, wall, gained


def wait_for_writer(run) -> None:
    """Until the writer's run reads running (30 s at most)."""
    from engine.runs import run_status

    deadline = time.monotonic() + 30
    while run_status(run, tail=0).state != "running":
        if time.monotonic() > deadline:
            raise SystemExit(f"the writer did not start: {run_status(run).state}")
        time.sleep(0.05)


async def wait_until(predicate, timeout: float, what: str, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


async def measure_cpu(seconds: float) -> tuple[float, int]:
    from canvas_tui.app import CanvasApp
    from canvas_tui.screens.dashboard import DashboardScreen
    from engine.runs import RunKind, create_run, run_status
    from engine.runs.control import kill_run, stop_run

    run = create_run(RunKind.PRETRAIN, "bench-stream", {"bench": True})
    launch_writer(run, seconds)
    try:
        wait_for_writer(run)
        app = CanvasApp()
        async with app.run_test(size=SIZE):
            app.open_dashboard(run.path)
            await wait_until(lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard")
            screen = app.screen
            await wait_until(
                lambda: screen.view.resolution == "full" and len(screen.view.train.xs) >= 5, 30, "the history"
            )
            await asyncio.sleep(2.0)  # past start-up work (first layout, first status read)
            cpu, wall, gained = await following(screen, seconds)
        return 100.0 * cpu / wall, gained
    finally:
        with contextlib.suppress(Exception):  # already ended, or refuses: killed below
            stop_run(run, wait=True, timeout=20)
        if run_status(run, tail=0).is_live:
            kill_run(run)


# ------------------------------------------------------------------------------ (b) first paint
def write_history(path: Path, n: int) -> None:
    from engine.runs import EventWriter

    with EventWriter(path) as w:
        w.emit("run_info", total_steps=n, params=1000, precision="bf16", device="cpu", t=1.0)
        for step in range(1, n + 1):
            w.emit("metric", step=step, loss=2.0 + 1.0 / step, tokens_per_s=1000.0, t=1.0 + step)
            if step % 10_000 == 0:
                w.emit("eval", step=step, val_loss=2.1 + 1.0 / step, t=1.0 + step)


async def first_paint(run_path: Path) -> tuple[float, str, float]:
    from canvas_tui.app import CanvasApp
    from canvas_tui.screens.dashboard import DashboardScreen

    app = CanvasApp(poll_interval=60.0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)  # the runs list settles first
        t0 = time.perf_counter()
        app.open_dashboard(run_path)
        await wait_until(lambda: isinstance(app.screen, DashboardScreen), 30, "the dashboard", poll=0.002)
        screen = app.screen

        def data_paint():
            return next((p for p in screen.paints if p[0] != "empty"), None)

        await wait_until(lambda: data_paint() is not None, 60, "a paint with data", poll=0.002)
        first = time.perf_counter() - t0
        resolution = data_paint()[0]
        await wait_until(lambda: screen.view.resolution == "full", 120, "the full history")
        full = time.perf_counter() - t0
    return first, resolution, full


# ------------------------------------------------------------------------------ (c), (d) the runs list
def write_store(home: Path, runs: int, mb: float) -> int:
    """``runs`` finished runs, each with about ``mb`` MB of trainer-like events; returns the bytes
    of one events file. The stream is written once with the real writer, then copied; the runs
    were created a day apart, the latest a day ago (a store of finished work)."""
    from engine.runs import EventWriter, create_run

    template = home / "template-events.jsonl"
    target = int(mb * 2**20)
    t0 = 1_764_000_000.0
    with EventWriter(template) as w:
        w.emit("status", state="running", message="pid 4242 on benchhost", t=t0)
        w.emit("run_info", total_steps=0, params=5_770_496, precision="bf16", device="cuda:0", t=t0)
        step = 0
        while template.stat().st_size < target:
            for _ in range(100):
                step += 1
                t = t0 + step * 0.25
                w.emit("metric", **trainer_metric(step, loss_scale=500, step_time=0.25, grad_norm=0.5, t=t))
                if step % 10 == 0:
                    w.emit("gpu", **ONE_GPU, t=t)
                    w.emit("system", cpu_pct=42.0, ram_used=12 * 2**30, ram_total=64 * 2**30, t=t)
                if step % 250 == 0:
                    w.emit("eval", step=step, val_loss=2.1 + 6.0 / (1 + step / 500), t=t)
                    w.emit("checkpoint", step=step, path=f"checkpoints/step-{step}", kind="step", t=t)
        w.emit("status", state="finished", message="", t=t0 + step * 0.25)
    data = template.read_bytes()
    template.unlink()
    for i in range(runs):
        run = create_run("pretrain", f"bench-{i:03d}", {"bench": True})
        fd = os.open(run.events_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        when = datetime.fromtimestamp(t0 - 86400 * (runs - i), timezone.utc).isoformat(timespec="seconds")
        run.update_meta(status="finished", total_steps=step, created=when, started=when, ended=when)
    return len(data)


def child(mode: str, expect: int, idle: float) -> None:
    """A fresh console process (``--child``): print one JSON line of what it measured."""
    cpu_start = time.process_time()  # the interpreter's own start-up is before this: add it below
    from canvas_tui.app import CanvasApp
    from canvas_tui.screens.runs import RunsScreen

    async def go() -> dict:
        out: dict = {}
        app = CanvasApp()
        cpu0, wall0 = time.process_time(), time.monotonic()
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: isinstance(app.screen, RunsScreen) and app.screen.is_mounted, 30, "runs")
            screen = app.screen
            empty = screen.query_one("#runs-empty")
            out["first_said"] = str(empty.render()) if empty.display else ""  # as mounted
            await pilot.pause()
            out["paint_cpu"] = time.process_time()
            if mode == "list":
                table = screen.query_one("#runs-table")
                await wait_until(lambda: table.row_count >= expect, 600, "the rows", poll=0.005)
                out["rows_cpu"] = time.process_time() - cpu0
                out["rows_wall"] = time.monotonic() - wall0
            await asyncio.sleep(2.0 if idle >= 5 else 0.5)  # past the first scans and layout
            c, w = time.process_time(), time.monotonic()
            await asyncio.sleep(idle)
            out["idle_pct"] = 100.0 * (time.process_time() - c) / (time.monotonic() - w)
        return out

    out = asyncio.run(go())
    out["imports_cpu"] = cpu_start
    print(json.dumps(out))


def run_child(mode: str, expect: int, idle: float) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    env = {**os.environ, "CANVAS_NO_WELCOME": "1"}  # an empty store opens on the Runs screen
    proc = subprocess.run(
        [*argv, "--expect", str(expect), "--idle", str(idle)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the console child ({mode}) failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_start(idle: float, repeats: int) -> None:
    """(c): ``repeats`` fresh consoles on an empty store (the current ``CANVAS_HOME``); the median."""
    paints, idles = [], []
    for i in range(repeats):
        empty = run_child("paint", 0, idle)
        paints.append(empty["paint_cpu"])
        idles.append(empty["idle_pct"])
        if repeats > 1:
            print(
                f"    console {i + 1}: first paint {empty['paint_cpu']:.3f} CPU-s, "
                f"idle {empty['idle_pct']:.2f}%"
            )
    print(
        f"(c) first paint, empty store: {statistics.median(paints):.2f} CPU-s from process start "
        f"(median of {repeats}; goal <= 0.4); idle empty runs list {statistics.median(idles):.2f}% of one "
        "core (goal <= 1%)"
    )


def measure_list(home: Path, runs: int, mb: float, idle: float, consoles: int = 2, repeats: int = 1) -> None:
    measure_start(idle, repeats)
    t = time.perf_counter()
    size = write_store(home, runs, mb)
    print(
        f"(d) store: {runs} finished runs, {size / 2**20:.2f} MiB of events each, written in "
        f"{time.perf_counter() - t:.1f} s"
    )
    for label in ("first console", "second console")[:consoles]:
        r = run_child("list", runs, idle)
        said = " ".join(r["first_said"].split()) or "(nothing)"
        print(
            f"(d) {label}: {runs} rows after {r['rows_cpu']:.2f} CPU-s ({r['rows_wall']:.2f} s wall; "
            f"goal <= 1 CPU-s); first said {said!r}; idle {r['idle_pct']:.2f}% of one core (goal <= 1%)"
        )


# ------------------------------------------------------------------------------ main
# ------------------------------------------------------------------------------ (e) 8-GPU feed
def stream_gpus(run_dir: str, seconds: float, gpus: int) -> None:
    """Play a multi-GPU trainer for ``seconds``: ~21 events/s through the real run context."""
    from engine.runs import run_context

    with run_context(run_dir) as session:
        session.emit(
            "run_info", total_steps=20_000, params=1_300_000_000, precision="bf16", device="cuda:0", config={}
        )
        start = time.monotonic()
        step = 0
        while not session.stop_requested and time.monotonic() - start < seconds:
            step += 1
            loss = 2.0 + 6.0 / (1 + step / 50)
            session.emit(
                "metric",
                step=step,
                loss=loss,
                lr=3e-4,
                grad_norm=1.0 + (step % 7) / 10,
                tokens_per_s=410_000.0 + step % 100,
                step_time=0.1,
                tokens=step * 524_288,
                peak_mem=61 * 2**30,
                mfu=0.41,
            )
            if step % 100 == 0:
                session.emit("eval", step=step, val_loss=loss + 0.1, perplexity=2.0**loss)
            if step % 10 == 0:
                for i in range(gpus):
                    session.emit(
                        "gpu",
                        index=i,
                        util=12.0 if i == 3 else 97.0 - i,
                        mem_used=(60 + i) * 2**30,
                        mem_total=80 * 2**30,
                        temp=62.0 + i,
                        power=640.0 + i,
                        power_limit=700.0,
                        sm_clock=1980.0,
                        name="NVIDIA H100 80GB HBM3",
                    )
                session.emit(
                    "system",
                    cpu_pct=35.0,
                    ram_used=200 * 2**30,
                    ram_total=2**40,
                    rss=40 * 2**30,
                    disk_free=2**42,
                )
                session.emit("carbon", energy_kwh=1e-3 * step, emissions_kg=2e-4 * step, trees=1e-5 * step)
            if step % 50 == 0:
                session.log(f"step {step} loss {loss:.4f}")
            time.sleep(max(0.0, start + step * 0.1 - time.monotonic()))


async def measure_gpu_feed(seconds: float, gpus: int) -> dict:
    """CPU of the console following a live ``gpus``-GPU run (the writer is another process)."""
    from canvas_tui.app import CanvasApp
    from canvas_tui.screens.dashboard import DashboardScreen
    from canvas_tui.widgets.gpu_pane import GpuPane
    from canvas_tui.widgets.loss_plot import LossPlot
    from engine.runs import RunKind, create_run, run_status
    from engine.runs.control import kill_run, stop_run

    run = create_run(RunKind.PRETRAIN, "bench-8gpu", {"bench": True})
    launch_writer(run, seconds, "--stream-gpus", str(gpus))
    try:
        wait_for_writer(run)
        app = CanvasApp()
        async with app.run_test(size=(160, 48)):
            app.open_dashboard(run.path)
            await wait_until(lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard")
            screen = app.screen
            await wait_until(
                lambda: screen.view.resolution == "full" and len(screen.view.gpus) == gpus, 30, "the GPU feed"
            )
            await asyncio.sleep(2.0)  # past start-up work
            gpu_pane, plot = screen.query_one(GpuPane), screen.query_one(LossPlot)
            counts = {"gpu": 0, "plot": 0}
            show, redraw = gpu_pane.show, plot.redraw

            def counted_show(*a, **k):
                counts["gpu"] += 1
                return show(*a, **k)

            def counted_redraw(*a, **k):
                counts["plot"] += 1
                return redraw(*a, **k)

            gpu_pane.show, plot.redraw = counted_show, counted_redraw  # type: ignore[method-assign]
            events = screen.view.events
            cpu, wall, gained = await following(screen, seconds)
            return {
                "pct": 100.0 * cpu / wall,
                "metrics": gained,
                "events": screen.view.events - events,
                "wall": wall,
                "gpu_redraws": counts["gpu"],
                "plot_redraws": counts["plot"],
            }
    finally:
        with contextlib.suppress(Exception):
            stop_run(run, wait=True, timeout=20)
        if run_status(run, tail=0).is_live:
            kill_run(run)


# ------------------------------------------------------------------------------ (f) a keystroke in a form
#: The forms (f) can type in: --form NAME → (what the output line calls it, the field typed in).
FORMS = {
    "new-run": ("New run form", "learning-rate field"),
    "eval-launch": ("evaluation launch form", "samples field"),
    "notes": ("notes editor", "tags field"),
    "notes-text": ("notes editor", "notes text area"),
    "chat-picker": ("chat model picker", "model path field"),
}


async def open_form(app, pilot, form: str):
    """Open ``form`` the way a user does (or push its screen), empty its field; (screen, field, recorded).

    ``recorded()`` is what the screen holds of the field once it has handled the key (the New run
    form records every value; the others read the widget when they launch or save).
    """
    from textual.widgets import Input, TextArea

    from canvas_tui.forms import field_id

    if form == "new-run":
        from canvas_tui.screens.new_run import NewRunScreen

        await pilot.press("n")
        await wait_until(
            lambda: isinstance(app.screen, NewRunScreen) and app.screen.is_mounted, 60, "the form"
        )
        screen = app.screen
        field = screen.query_one("#" + field_id("lr"), Input)
        return screen, field, lambda: screen.values["lr"]
    if form == "eval-launch":
        from canvas_tui.screens.eval_launch import EvalLaunchScreen

        screen, selector = EvalLaunchScreen(), "#launch-samples"
    elif form in ("notes", "notes-text"):
        from canvas_tui.screens.notes import NotesScreen
        from engine.runs import create_run

        run = create_run("pretrain", None, {"bench": True})
        screen = NotesScreen(str(run.path), run.id)
        selector = "#notes-tags" if form == "notes" else "#notes-text"
    else:
        from canvas_tui.screens.chat_picker import ModelPickerScreen

        screen, selector = ModelPickerScreen(), "#picker-path"
    app.push_screen(screen)
    await wait_until(lambda: app.screen is screen and screen.is_mounted, 60, "the form")
    field = screen.query_one(selector)
    if isinstance(field, TextArea):
        return screen, field, lambda: field.text
    return screen, field, lambda: field.value


async def measure_keystrokes(keys: int, form: str = "new-run") -> dict:
    """Main-thread CPU-seconds per keystroke in a form, and of the New run form's debounced validation."""
    from textual._wait import wait_for_idle
    from textual.widgets import TextArea

    from canvas_tui.app import CanvasApp
    from canvas_tui.screens.new_run import VALIDATE_DELAY

    async def settled() -> None:
        """Idle again, and the repaint the key scheduled done (if the screen's timer had not yet)."""
        await wait_for_idle(0)
        app.screen._on_timer_update()

    os.environ["CANVAS_NO_WELCOME"] = "1"  # an empty store opens on the Runs screen, where n is
    app = CanvasApp(poll_interval=60.0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)
        _, field, recorded = await open_form(app, pilot, form)
        await pilot.pause(1.0)  # the mount-time work (the New run form: both tabs validated) is over
        field.focus()
        if isinstance(field, TextArea):
            field.clear()
        else:
            field.value = ""
        await pilot.pause(VALIDATE_DELAY * 3)
        costs = []
        typed = ""
        for i in range(keys):
            typed += str(i % 10)
            t = time.thread_time()
            # The Pilot's own key path (the key event posted as the terminal driver posts it, then
            # waiting for the app to be idle), without Pilot.press's wait on every widget of the
            # screen: that wait posts a callback to each of the form's ~235 widgets and costs
            # ~16 ms a key by itself (measured on an idle form), which no real keystroke causes.
            await app._press_keys((typed[-1],))
            await wait_until(
                lambda want=typed: recorded() == want, 10, f"key {i + 1} handled by the form", 0.001
            )
            await settled()
            costs.append(time.thread_time() - t)
        assert recorded() == typed, f"typed {keys} keys, the form holds {recorded()!r}"
        t = time.thread_time()
        await asyncio.sleep(VALIDATE_DELAY * 3)  # the one validation after the burst (New run form)
        await settled()
        validation = time.thread_time() - t
    costs.sort()
    return {"median": statistics.median(costs), "worst": costs[-1], "validation": validation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = Sizes(parser)
    sizes.add("--seconds", 30.0, 2.0, "CPU measurement window", type=float)
    sizes.add("--repeats", 3, 1, "first-paint repeats", type=int)
    sizes.add("--events", 200_000, 2_000, "metric events in the long history", type=int)
    sizes.add("--runs", 90, 4, "finished runs in the store of (d)", type=int)
    sizes.add("--run-mb", 1.7, 0.05, "MB of events per run in (d)", type=float)
    sizes.add("--idle", 10.0, 1.0, "idle CPU measurement window of (c) and (d)", type=float)
    sizes.add("--keys", 20, 5, "keystrokes typed in (f)", type=int)
    parser.add_argument(
        "--only", choices=("cpu", "paint", "start", "list", "gpu8", "keys"), help="run one part only"
    )
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in the feed of (e)")
    parser.add_argument(
        "--form", choices=(*FORMS, "all"), default="new-run", help="the form (f) types in (all: each in turn)"
    )
    parser.add_argument("--stream-gpus", type=int, default=0, help=argparse.SUPPRESS)  # (e)'s writer
    parser.add_argument("--stream", metavar="RUN_DIR", help=argparse.SUPPRESS)  # the writer process
    parser.add_argument("--child", choices=("paint", "list"), help=argparse.SUPPRESS)  # a console
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    args = sizes.resolve(parser.parse_args())
    if args.stream and args.stream_gpus:
        stream_gpus(args.stream, args.seconds, args.stream_gpus)
        return
    if args.stream:
        stream(args.stream, args.seconds)
        return
    if args.child:
        child(args.child, args.expect, args.idle)
        return

    home = Path(tempfile.mkdtemp(prefix="bench-console-"))
    os.environ["CANVAS_HOME"] = str(home)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, CANVAS_HOME={home}")
    try:
        if args.only in (None, "cpu"):
            pct, gained = asyncio.run(measure_cpu(args.seconds))
            print(
                f"(a) following a run at ~10 events/s for {args.seconds:g} s ({gained} new metric points): "
                f"console CPU {pct:.2f}% of one core (goal < 3%)"
            )
        if args.only in (None, "paint"):
            from engine.runs import create_run

            run = create_run("pretrain", "bench-long", {"bench": True})
            run.update_meta(status="finished", total_steps=args.events)
            t = time.perf_counter()
            write_history(run.events_path, args.events)
            size = run.events_path.stat().st_size
            print(
                f"(b) history: {args.events:,} metric events, {size / 2**20:.1f} MiB, "
                f"written in {time.perf_counter() - t:.1f} s"
            )
            firsts = []
            for i in range(args.repeats):
                first, resolution, full = asyncio.run(first_paint(run.path))
                firsts.append(first)
                print(
                    f"    run {i + 1}: first paint with data {first:.3f} s ({resolution}), "
                    f"full history {full:.2f} s"
                )
            print(
                f"(b) first paint with data: median {statistics.median(firsts):.3f} s over {args.repeats} "
                f"(goal < 1 s)"
            )
        if args.only in (None, "gpu8"):
            r = asyncio.run(measure_gpu_feed(args.seconds, args.gpus))
            print(
                f"(e) following a {args.gpus}-GPU run for {r['wall']:.0f} s ({r['events']} events, "
                f"{r['metrics']} metric points; {r['plot_redraws']} plot and {r['gpu_redraws']} GPU-pane "
                f"redraws): console CPU {r['pct']:.2f}% of one core (goal <= 3%)"
            )
        if args.only in (None, "keys"):
            for form in FORMS if args.form == "all" else (args.form,):
                r = asyncio.run(measure_keystrokes(args.keys, form))
                what, field = FORMS[form]
                line = (
                    f"(f) a keystroke in the {what} ({args.keys} keys): main-thread CPU median "
                    f"{r['median'] * 1e3:.1f} ms, worst {r['worst'] * 1e3:.1f} ms (goal <= 20 ms)"
                )
                if form == "new-run":
                    line += f"; the debounced validation after the burst {r['validation'] * 1e3:.1f} ms"
                else:
                    line += f" ({field})"
                print(line)
        if args.only == "start":  # (c) alone (with the whole run or --only list, it comes first in (d))
            start_home = home / "start"
            start_home.mkdir()
            os.environ["CANVAS_HOME"] = str(start_home)
            measure_start(args.idle, args.repeats)
        if args.only in (None, "list"):
            list_home = home / "list"
            list_home.mkdir()
            os.environ["CANVAS_HOME"] = str(list_home)
            consoles = 1 if args.tiny else 2
            measure_list(list_home, args.runs, args.run_mb, args.idle, consoles, repeats=args.repeats)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
