"""Regenerate ``docs/dashboard.svg``, the README's picture of the run dashboard.

The SVG is what the console's own screenshot action writes (command palette → "Screenshot", which
is Textual's ``App.deliver_screenshot``, i.e. ``App.export_screenshot``), taken by a Pilot on a real
run: without ``--run``, a short real pre-training run of the ``tiny`` preset on the embedded
corpus (with validation, checkpoints and samples, so every pane has something to show), trained
in a temporary ``CANVAS_HOME`` on whatever this machine has (a few minutes on 2 CPU cores)::

    .venv/bin/python docs/make_screenshot.py                  # train a tiny run, write docs/dashboard.svg
    .venv/bin/python docs/make_screenshot.py --run NAME       # a run of the current store instead
    .venv/bin/python docs/make_screenshot.py --out /tmp/x.svg --size 120x40

``tests/test_readme_screenshot.py`` runs :func:`screenshot` on a run written by the real event
writer, so this script cannot rot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: import the project from this checkout
    sys.path.insert(0, str(REPO))

DEFAULT_OUT = REPO / "docs" / "dashboard.svg"
DEFAULT_SIZE = (120, 40)
#: The run the default screenshot shows: small enough for 2 CPU cores, long enough for curves.
TRAIN_SETTINGS = (
    "max_steps=150",
    "micro_batch=4",
    "seq_len=64",
    "log_every=2",
    "eval_every=25",
    "checkpoint_every=50",
    "sample_every=50",
    "telemetry_interval=2",
)


def _painted(app) -> bool:
    """The dashboard is shown and has drawn its run (tolerant of the screen's internals)."""
    from canvas_tui.screens.dashboard import DashboardScreen

    screen = app.screen
    if not isinstance(screen, DashboardScreen):
        return False
    view = getattr(screen, "view", None)
    full = getattr(view, "resolution", "full") == "full"
    return full and getattr(screen, "status", True) is not None and not getattr(screen, "_dirty", False)


async def _shoot(run_ref: str, size: tuple[int, int], timeout: float) -> str:
    from canvas_tui.app import CanvasApp

    app = CanvasApp(run_ref, poll_interval=60.0)
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + timeout
        while not _painted(app):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dashboard of {run_ref!r} did not paint within {timeout:.0f} s")
            await pilot.pause(0.1)
        await pilot.pause(1.0)  # the plots' first refresh
        return app.export_screenshot(title="Neural Canvas")


def screenshot(run_ref: str, out: Path, size: tuple[int, int] = DEFAULT_SIZE, timeout: float = 30.0) -> Path:
    """Open the console on ``run_ref``'s dashboard (the current ``CANVAS_HOME``), take the
    console's screenshot and write it to ``out`` (temporary name, then renamed)."""
    svg = asyncio.run(_shoot(run_ref, size, timeout))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(svg, encoding="utf-8")
    os.replace(tmp, out)
    return out


def train_tiny_run(name: str = "tiny-embedded") -> str:
    """A real, short pre-training run in the current ``CANVAS_HOME`` (trained in the foreground)."""
    cmd = [sys.executable, "-m", "canvas_tui", "train", "--name", name]
    for setting in TRAIN_SETTINGS:
        cmd += ["--set", setting]
    subprocess.run(cmd, check=True, cwd=REPO)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run of the current store (default: train a tiny one in a temp home)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the SVG")
    parser.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="terminal COLUMNSxROWS")
    args = parser.parse_args(argv)
    columns, rows = (int(n) for n in args.size.lower().split("x"))
    if args.run:
        path = screenshot(args.run, args.out.resolve(), (columns, rows))
    else:
        with tempfile.TemporaryDirectory(prefix="canvas-shot-") as home:
            os.environ["CANVAS_HOME"] = home
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            path = screenshot(train_tiny_run(), args.out.resolve(), (columns, rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
