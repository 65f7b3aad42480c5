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


# ------------------------------------------------------------------------------ first paint
#: What `canvas` (the console) must not import before its first paint: the screens it does not show
#: at start (each is imported when pushed), the other commands, and the run store's writers, process
#: control and event readers (the scan imports those in its worker, and only for a non-empty store).
LAZY = (
    *(f"canvas_tui.screens.{name}" for name in ("dashboard", "chat", "arena", "evaluation", "eval_samples")),
    *(f"canvas_tui.screens.{name}" for name in ("new_run", "compare", "help", "welcome", "notes", "confirm")),
    *(f"canvas_tui.commands.{name}" for name in ("train", "finetune", "eval", "runs", "serve", "info")),
    "canvas_tui.viewmodel",
    *(f"engine.runs.{name}" for name in ("control", "session", "process", "heartbeat", "status")),
    *(f"engine.runs.{name}" for name in ("summary", "reader", "events")),
    "engine.demo_chain",
    "engine.config.model",
    "engine.config.presets",
)

FIRST_PAINT_PROBE = r"""
import contextlib, io, json, sys
from canvas_tui.cli import main
with contextlib.redirect_stderr(io.StringIO()):
    assert main([]) == 2  # plain `canvas`: all of it up to "the console needs an interactive terminal"
import canvas_tui.app
print(json.dumps(sorted(sys.modules)))
"""


def test_the_console_imports_only_what_its_first_screen_needs():
    """The gain of issue 15's first paint (0.47 -> under 0.4 CPU-s from process start), guarded
    without a clock: each module here cost its import (and, from source, its compile) before the
    Runs screen was drawn, and `canvas` imported every command's module to build its parser."""
    out = subprocess.run(
        [sys.executable, "-c", FIRST_PAINT_PROBE],
        stdin=subprocess.DEVNULL,  # not a terminal: `canvas` stops short of opening the console
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "canvas_tui.screens.runs" in loaded and "canvas_tui.commands.console" in loaded
    assert sorted(loaded.intersection(LAZY)) == []


def test_the_lazy_names_resolve_where_they_say():
    """engine.runs and engine.config import their names on first use; each one named is there, and
    the command line knows which module registers each sub-command (it imports only that one)."""
    import argparse
    import importlib

    import engine.config
    import engine.runs
    from canvas_tui import cli

    for package in (engine.runs, engine.config):
        assert sorted(package._MODULE_OF) == sorted(package.__all__)
        for name in package.__all__:
            module = importlib.import_module(f"{package.__name__}.{package._MODULE_OF[name]}")
            assert getattr(package, name) is getattr(module, name)
    for name in cli.COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"canvas_tui.commands.{name}").register(sub)
        assert {command for command, module in cli.MODULE_OF.items() if module == name} == set(sub.choices)
    assert cli.command_module([]) == cli.command_module(["--home", "runs"]) == "console"
    assert cli.command_module(["--home", "x", "logs", "-f"]) == "runs"
    assert cli.command_module(["--help"]) is None and cli.command_module(["no-such-command"]) is None


def test_the_app_uses_no_private_textual_api():
    """canvas_tui/app.py read Textual's event clock from ``textual._time`` and overrode
    ``App._handle_exception`` to save crash reports: private names that any Textual release may
    change. The app neither imports a private module nor overrides or calls a private App method."""
    import ast

    from textual.app import App

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    tree = ast.parse((REPO / "canvas_tui" / "app.py").read_text(encoding="utf-8"))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    app_private = {name for cls in App.__mro__ for name in vars(cls) if private(name)}
    found = [m for m in modules if any(private(part) for part in m.split("."))]
    found += [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in app_private
    ]
    found += [
        node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in app_private
    ]
    assert found == []
