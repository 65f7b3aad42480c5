"""Suite-wide hermetic settings: no network look-ups, no writes outside tmp, few threads.

Every test gets its own ``CANVAS_HOME`` (runs, settings and, by default, the data cache). Tests that
train in process opt into ``shared_cache`` instead: the embedded corpus is extracted and prepared
once per session into one data cache (``CANVAS_CACHE``), and each such test still keeps its own
run store. Content-hashed cache keys make the sharing safe: a test with other data or tokenizer
settings prepares its own entry beside the shared one.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
# One OpenMP thread a torch process (this one, and every engine it starts: they inherit it). The
# suite runs two workers on two cores, each often beside an engine subprocess; torch's default of one
# spinning thread a core made them fight for the cores (FACTS.md, "Compute"): the training-heavy
# tests ran 2.8x slower in wall time (442 s against 159 s for the same four files, -n 2).
# Every comparison a test makes is between processes started the same way, so results do not move.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.pop("CANVAS_CACHE", None)  # a developer's own cache never leaks into the suite
# An empty run store opens the console on the welcome screen; the console tests written before it
# expect the Runs screen. tests/test_welcome.py removes this and checks the real default.
os.environ.setdefault("CANVAS_NO_WELCOME", "1")

import pytest

from engine.locations import CACHE_ENV


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``: the console's Pilot tests) run on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory):
    """A CANVAS_HOME for what runs outside any one test (module- and session-scoped fixtures), so
    that nothing, not even a fixture that extracts the embedded corpus, writes to the user's home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANVAS_HOME", str(tmp_path_factory.mktemp("session-home")))
        yield


@pytest.fixture(autouse=True)
def canvas_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own CANVAS_HOME, so runs, caches and settings never leak between tests."""
    home = tmp_path_factory.mktemp("canvas-home")
    monkeypatch.setenv("CANVAS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's data cache with the embedded corpus extracted (what fine-tune fixtures read)."""
    from engine.data.embedded import corpus_path

    root = tmp_path_factory.mktemp("shared-data-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root))
        corpus_path()
    return root


@pytest.fixture(scope="session")
def prepared_cache(corpus_cache: Path) -> Path:
    """The same cache with the corpus also prepared (tokenizer trained, tokens packed) the way the
    ``tiny`` preset and the demo prepare it, once per session. Use it through ``shared_cache``."""
    from engine.data import TokenizerConfig, prepare

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(corpus_cache))
        prepare("embedded", TokenizerConfig(vocab_size=4096))
    return corpus_cache


@pytest.fixture
def shared_cache(prepared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test (and the engine processes it starts) reads prepared data from the session's cache.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("shared_cache")``. Not for tests
    that inspect the cache itself (they need an empty one: the default ``CANVAS_HOME/cache``).
    """
    monkeypatch.setenv(CACHE_ENV, str(prepared_cache))
    return prepared_cache
