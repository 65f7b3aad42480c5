"""``bench/gpu_check.py`` runs in the suite at tiny shapes (automatic without CUDA), so the one GPU
check cannot rot before a GPU is lent: every row it promises is in its table and its JSON, each with
a number or an explicit ``skipped: no CUDA``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    ("train", "ours tokens/s"),
    ("train", "MFU"),
    ("train vs transformers", "transformers tokens/s"),
    ("train vs transformers", "ratio ours / transformers"),
    ("nvml", "GPU utilisation (first event)"),
    ("generate", "ours new tokens/s"),
    ("generate", "transformers static cache tokens/s"),
    ("generate", "ratio ours / transformers"),
    ("qlora 7B", "peak GPU memory"),
    ("qlora 7B", "tokens/s"),
    ("fp16 + scaler", "tokens/s"),
    ("energy", "total (CodeCarbon)"),
    ("energy", "GPU (CodeCarbon)"),
]
#: What a machine without CUDA cannot measure; everything else is measured at tiny shapes.
NEEDS_CUDA = {
    ("train", "MFU"),
    ("nvml", "GPU utilisation (first event)"),
    ("qlora 7B", "peak GPU memory"),
    ("fp16 + scaler", "tokens/s"),
    ("energy", "GPU (CodeCarbon)"),
}


@pytest.mark.slow  # ~45 s on 2 loaded cores: most of it importing transformers, peft and bitsandbytes
def test_gpu_check_tiny_gives_every_row_a_number_or_a_reason(tmp_path: Path):
    out_json = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--tiny", "--json", str(out_json)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out_json.read_text())
    assert data["tiny"] is True and data["machine"].startswith("machine: ")
    rows = {(r["check"], r["metric"]): r for r in data["rows"]}
    assert list(rows) == ROWS
    import torch

    cuda = torch.cuda.is_available()
    for key, row in rows.items():
        assert row["error"] is None, row
        if key in NEEDS_CUDA and not cuda:
            assert row["value"] is None and row["skipped"] == "skipped: no CUDA", row
        else:
            assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"]), row
            assert row["value"] > 0, row
    table = proc.stdout
    for check, metric in ROWS:
        assert f"{check}: {metric}" in table
    assert "skipped: no CUDA" in table or cuda
