"""Where Neural Canvas keeps its state on disk. Torch-free: the console imports it.

By default runs live in the platform's user data directory, prepared data in the user cache
directory and settings in the user config directory (XDG on Linux). Setting ``CANVAS_HOME`` (or
passing ``--home``, which sets it for child processes too) puts all three under one folder, which
is what makes tests and shared servers hermetic. ``CANVAS_CACHE`` moves only the prepared-data
cache (it wins over ``CANVAS_HOME``): the test suite prepares the embedded corpus once per session
and shares it between tests that each keep their own runs.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "neural-canvas"
HOME_ENV = "CANVAS_HOME"
CACHE_ENV = "CANVAS_CACHE"


def canvas_home() -> Path | None:
    """The ``CANVAS_HOME`` override, or None when the platform defaults apply."""
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def runs_dir() -> Path:
    """The run store: one sub-directory per run."""
    home = canvas_home()
    if home is not None:
        return home / "runs"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "runs"


def demo_chain_file() -> Path:
    """The demo chain's state (:mod:`engine.demo_chain`), next to the run store: the console checks
    that it exists before importing the chain's code."""
    return runs_dir().parent / "demo.json"


def cache_dir() -> Path:
    """Prepared data (tokenizers, token shards), keyed by content hash; safe to delete."""
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser().resolve()
    home = canvas_home()
    if home is not None:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """User settings such as the console theme."""
    home = canvas_home()
    if home is not None:
        return home / "config"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by the owner only: runs hold configs and logs.

    Every folder this creates is 0700 whatever the umask (``mkdir -p`` would give the parents the
    umask's default, often 0755); folders that already exist are left as the user made them.
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made by a concurrent process: it is that process's to set up
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # raises the clear error (a file there)
    return path


def make_private(path: Path) -> None:
    """Make ``path`` and everything under it owner-only: folders 0700, files 0600 (0700 when
    executable). Symbolic links are neither followed nor changed. For folders written by libraries
    that use the umask's modes (tokenizers, numpy), before they are renamed into the cache."""
    import stat

    def fix(p: str) -> None:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            return
        executable = stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR
        mode = 0o700 if executable else 0o600
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(p, mode)

    fix(str(path))
    for top, dirs, files in os.walk(path):  # os.walk does not descend into linked folders
        for name in (*dirs, *files):
            fix(os.path.join(top, name))
