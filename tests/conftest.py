"""Suite-wide hermetic settings: no network look-ups, no writes outside tmp, few threads."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")

import pytest


@pytest.fixture(autouse=True)
def canvas_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own CANVAS_HOME, so runs, caches and settings never leak between tests."""
    home = tmp_path_factory.mktemp("canvas-home")
    monkeypatch.setenv("CANVAS_HOME", str(home))
    return home
