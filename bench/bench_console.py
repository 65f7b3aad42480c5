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

Everything lives in a temporary ``CANVAS_HOME``. Run:

    .venv/bin/python bench/bench_console.py
    .venv/bin/python bench/bench_console.py --seconds 10 --repeats 5
    .venv/bin/python bench/bench_console.py --tiny      # smoke mode (what the tests run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import Sizes

SIZE = (120, 40)


# ------------------------------------------------------------------------------ the writer
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
            session.emit(
                "metric",
                step=step,
                loss=2.0 + 6.0 / (1 + step / 50),
                lr=2e-3,
                tokens_per_s=8000.0 + step % 100,
                step_time=0.1,
                tokens=step * 2048,
            )
            if step % 10 == 0:
                session.emit(
                    "gpu",
                    index=0,
                    util=80.0,
                    mem_used=30 * 2**30,
                    mem_total=80 * 2**30,
                    temp=65.0,
                    power=250.0,
                    power_limit=400.0,
                )
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
                session.log(f"step {step} loss {2.0 + 6.0 / (1 + step / 50):.4f}")
            next_at = start + step * 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))


# ------------------------------------------------------------------------------ (a) CPU
async def wait_until(predicate, timeout: float, what: str, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


async def measure_cpu(seconds: float) -> tuple[float, int]:
    from canvas_tui.app import CanvasApp
    from canvas_tui.screens.dashboard import DashboardScreen
    from engine.runs import RunKind, create_run, launch_detached, run_status
    from engine.runs.control import kill_run, stop_run

    run = create_run(RunKind.PRETRAIN, "bench-stream", {"bench": True})
    launch_detached(
        run,
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--stream",
            str(run.path),
            "--seconds",
            str(seconds + 60),
        ],
    )
    try:
        deadline = time.monotonic() + 30
        while run_status(run, tail=0).state != "running":
            if time.monotonic() > deadline:
                raise SystemExit(f"the writer did not start: {run_status(run).state}")
            time.sleep(0.05)
        app = CanvasApp()
        async with app.run_test(size=SIZE):
            app.open_dashboard(run.path)
            await wait_until(lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard")
            screen = app.screen
            await wait_until(
                lambda: screen.view.resolution == "full" and len(screen.view.train.xs) >= 5, 30, "the history"
            )
            await asyncio.sleep(2.0)  # past start-up work (first layout, first status read)
            points = len(screen.view.train.xs)
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            gained = len(screen.view.train.xs) - points
            if gained < seconds * 5:
                raise SystemExit(f"the dashboard followed only {gained} metric events in {wall:.0f} s")
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


# ------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = Sizes(parser)
    sizes.add("--seconds", 30.0, 2.0, "CPU measurement window", type=float)
    sizes.add("--repeats", 3, 1, "first-paint repeats", type=int)
    sizes.add("--events", 200_000, 2_000, "metric events in the long history", type=int)
    parser.add_argument("--only", choices=("cpu", "paint"), help="run one part only")
    parser.add_argument("--stream", metavar="RUN_DIR", help=argparse.SUPPRESS)  # the writer process
    args = sizes.resolve(parser.parse_args())
    if args.stream:
        stream(args.stream, args.seconds)
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
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
