"""Console settings (theme, smoothing, key remaps) in ``<config_dir>/console.json``. No Textual.

Written atomically (temporary file, fsync, rename) so a console killed mid-save never leaves a
half-written file; an unreadable or hand-broken file falls back to the defaults instead of
stopping the console from opening. ``CANVAS_HOME`` (tests) relocates it via
:func:`engine.locations.config_dir`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine import locations

FILE_NAME = "console.json"
DEFAULT_THEME = "canvas-dark"


@dataclass
class Settings:
    theme: str = DEFAULT_THEME
    smoothing: float = 0.6
    log_scale: bool = False
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> key(s), e.g. {"runs.stop": "x"}
    welcome_seen: bool = False  # the welcome screen was dismissed: an empty store opens on Runs

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(out.theme, str) or not out.theme:
            out.theme = DEFAULT_THEME
        if not isinstance(out.smoothing, (int, float)) or not 0 <= out.smoothing < 1:
            out.smoothing = 0.6
        out.log_scale = bool(out.log_scale)
        out.welcome_seen = out.welcome_seen is True
        if not isinstance(out.keymap, dict):
            out.keymap = {}
        out.keymap = {str(k): str(v) for k, v in out.keymap.items()}
        return out


def settings_path() -> Path:
    return locations.config_dir() / FILE_NAME


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Settings()
    return Settings.from_dict(data) if isinstance(data, dict) else Settings()


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    from engine.runs.store import write_json_atomic

    path = path or settings_path()
    locations.ensure_private_dir(path.parent)
    write_json_atomic(path, asdict(settings))
    return path
