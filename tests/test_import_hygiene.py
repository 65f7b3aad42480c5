"""The torch-free console, proved at run time: the one subprocess check behind the import contracts.

`lint-imports` ([tool.importlinter] in pyproject.toml) checks the import graph statically, and it
sees imports inside functions too; the console's deliberate lazy edges (``canvas export``,
``canvas data``, ``canvas demo``, the engine's own lazy ``datasets``/``codecarbon``/``torch`` calls)
are listed there in ``ignore_imports``. What a static graph cannot tell is whether those edges stay
lazy, and what the console's code paths load when they run. This test does, in a fresh interpreter:
it imports every console module, runs the run-store commands, ``canvas info``'s report and the
console's fine-tune checks, and starts the app headless until its first scan of the run store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: What the console never loads: seconds of import time each (FACTS.md), and a CUDA context for torch.
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "codecarbon")

PROBE = r"""
import asyncio, contextlib, importlib, io, json, os, pkgutil, sys, time

HEAVY = {heavy!r}
def loaded(names):
    return sorted(m for m in names if m in sys.modules)

stages = {{}}
t = time.perf_counter()
from canvas_tui.cli import main
seconds = time.perf_counter() - t

# The run-store commands and `canvas info`: neither the ML stack nor Textual.
COMMANDS = (["runs", "--json"], ["status", "x"], ["logs", "x"], ["rm", "x"])
COMMANDS += (["info"], ["info", "--presets"], ["--help"])
for argv in COMMANDS:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            main(argv)
from canvas_tui.commands.info import machine_report
machine_report(False)
stages["cli"] = loaded(HEAVY + ("textual", "pandas"))
t = time.perf_counter()
import canvas_tui.app, canvas_tui.screens.dashboard, canvas_tui.screens.new_run
stages["import seconds"] = round(seconds + time.perf_counter() - t, 3)

# Every console module and every engine module whose heavy imports are lazy by design (the
# `ignore_imports` of the contracts): importing them loads nothing heavy.
import canvas_tui, engine.config, engine.data, engine.finetune.chat_data, engine.runs, engine.telemetry
LIGHT = (canvas_tui, engine.runs, engine.config, engine.data, engine.finetune.chat_data, engine.telemetry)
for package in LIGHT:
    for mod in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not mod.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(mod.name)
import engine.finetune.embedded_chat, engine.preflight, engine.sysinfo
engine.data.parse_spec("embedded,hf:allenai/c4:en")
stages["imports"] = loaded(HEAVY + ("tokenizers", "pyarrow"))

# What the console runs for a fine-tune: base hint, preflight with the data read, run creation.
from tests.console_fixtures import fake_checkpoint, make_run
from canvas_tui import forms
from engine.finetune.base import resolve_base
from engine.finetune.launch import create_finetune_run
from engine.finetune.preflight import preflight
from engine.finetune.base import weight_shapes
assert weight_shapes(fake_checkpoint(make_run("base"), 5))
assert resolve_base("").run is not None
checked = preflight(forms.finetune_config(forms.finetune_values()), read_data=True)
assert checked.conversations > 0
create_finetune_run(checked.config, "ft")

# The app itself, started headless until it has scanned the run store.
from canvas_tui.app import CanvasApp
async def start():
    app = CanvasApp(poll_interval=60.0)
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 60
        while getattr(app.screen, "scans", 0) < 1:
            assert time.monotonic() < deadline, "the runs screen never scanned"
            await pilot.pause(0.05)
asyncio.run(start())
stages["console"] = loaded(HEAVY)
import engine.model
stages["control"] = loaded(HEAVY)  # the probe can fail: the model does import torch
print(json.dumps(stages))
"""


def test_the_console_loads_no_ml_stack_when_it_runs(canvas_home):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    stages = json.loads(out.stdout.strip().splitlines()[-1])
    assert stages["cli"] == []  # not even Textual for `canvas runs/status/logs/rm/info`
    assert stages["imports"] == []  # nor tokenizers or pyarrow, when nothing has run yet
    assert stages["console"] == []
    assert "torch" in stages["control"]
    assert stages["import seconds"] < 2.0  # ~0.35 s measured on 2 cores
