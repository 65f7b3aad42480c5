"""The `canvas` command: version, info, presets and export, through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import PRESETS

REPO = Path(__file__).resolve().parents[1]


def canvas(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_version():
    from canvas_tui import __version__

    out = canvas("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"canvas {__version__}"


def test_info_reports_torch_gpus_and_the_run_store(tmp_path):
    out = canvas("--home", str(tmp_path), "info", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    import importlib.metadata

    assert report["torch"]["version"] == importlib.metadata.version("torch")
    assert report["runs_dir"] == str(tmp_path.resolve() / "runs")
    assert report["cache_dir"] == str(tmp_path.resolve() / "cache")
    if not report["gpus"]:  # no GPU here: the reason is given, not an empty list
        assert report["gpu_reason"]
    text = canvas("info", env={"CANVAS_HOME": str(tmp_path)}).stdout
    assert f"runs          {tmp_path.resolve() / 'runs'} (from CANVAS_HOME" in text
    assert "bitsandbytes  " in text and "CodeCarbon    " in text


def test_info_presets_prints_exact_counts():
    out = canvas("info", "--presets", "--json")
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    for name, preset in PRESETS.items():
        assert rows[name]["params"] == preset.model.num_params()
    text = canvas("info", "--presets").stdout
    assert f"{PRESETS['seed-base'].model.num_params():,}" in text


class FakeNvml:
    """Stand-in for pynvml's functions: NVML is absent on this machine."""

    class NVMLError_LibraryNotFound(Exception):
        pass

    def __init__(self, gpus=(), fail=None):
        self.gpus, self.fail, self.shutdown = list(gpus), fail, False

    def nvmlInit(self):
        if self.fail:
            raise self.fail

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlSystemGetDriverVersion(self):
        return b"550.54"

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.gpus[h][0]

    def nvmlDeviceGetMemoryInfo(self, h):
        return type("Mem", (), {"total": self.gpus[h][1] * 2**30})()


def test_gpu_listing_through_nvml_and_its_reasons(monkeypatch):
    from engine.telemetry.gpus import list_gpus

    fake = FakeNvml([("NVIDIA H100 80GB HBM3", 80), ("NVIDIA H100 80GB HBM3", 80)])
    gpus, reason = list_gpus(fake)
    assert reason is None and fake.shutdown
    assert [(g.index, g.name, g.memory_total_mib, g.driver) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81920, "550.54"),
        (1, "NVIDIA H100 80GB HBM3", 81920, "550.54"),
    ]
    missing = FakeNvml(fail=FakeNvml.NVMLError_LibraryNotFound())
    assert list_gpus(missing) == ([], "no NVIDIA driver: the NVML library (libnvidia-ml.so) was not found")
    assert list_gpus(FakeNvml([])) == ([], "the NVIDIA driver is loaded but reports no GPU")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "hides every GPU" in list_gpus(fake)[1]


def test_export_of_a_weights_folder_and_clear_errors(tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.model import save_model
    from tests.helpers import random_model

    save_model(random_model(), tmp_path / "ckpt")
    out = canvas("export", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "hf"))
    assert out.returncode == 0, out.stderr
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "hf")).__name__ == "LlamaForCausalLM"
    again = canvas("export", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "hf"))
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
    assert "Traceback" not in again.stderr
    missing = canvas("export", "no-such-run", "--hf", str(tmp_path / "x"), env={"CANVAS_HOME": str(tmp_path)})
    assert missing.returncode == 2 and "no run or weights folder called 'no-such-run'" in missing.stderr


@pytest.mark.parametrize("which", ["best", "last", "7"])
def test_export_of_a_run_checkpoint_by_id_prefix(tmp_path, which):
    from engine.model import save_model
    from engine.runs.store import write_json_atomic
    from tests.helpers import random_model

    checkpoints = tmp_path / "runs" / "20261127-101500-abcd" / "checkpoints"
    save_model(random_model(), checkpoints / "step-000007")
    write_json_atomic(checkpoints / "best.json", {"dir": "step-000007", "step": 7, "val_loss": 1.0})
    out = canvas(
        "export",
        "20261127-1015",
        "--checkpoint",
        which,
        "--hf",
        str(tmp_path / "hf"),
        env={"CANVAS_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "step-000007" in out.stdout and (tmp_path / "hf" / "config.json").is_file()
    wrong = canvas(
        "export",
        "20261127",
        "--checkpoint",
        "8",
        "--hf",
        str(tmp_path / "y"),
        env={"CANVAS_HOME": str(tmp_path)},
    )
    assert wrong.returncode == 2 and "it has ['step-000007']" in wrong.stderr
