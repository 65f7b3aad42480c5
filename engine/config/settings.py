"""Reading settings the way every run kind's config does: TOML files, ``--set KEY=VALUE`` pairs,
unknown-key errors with a "did you mean", and ``--set`` strings coerced to a field's type.

One public home so each kind's config module (pre-training, fine-tuning, and the kinds to come)
reads keys the same way and says the same thing about a mistyped one. Torch-free.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError

#: How a ``--set`` value spells a boolean (case-insensitive).
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def check_keys(data: dict[str, Any], known: set[str], prefix: str) -> None:
    """Refuse the first key of ``data`` not in ``known``, naming the closest known one."""
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, 1)
            hint = f" Did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(
                prefix + key,
                f"unknown setting {prefix}{key!r}.{hint} Known settings: {', '.join(sorted(known))}.",
            )


def coerce(name: str, raw: str, current: Any) -> Any:
    """Parse a ``--set`` value to the type of the field it sets (``current`` is its value now)."""
    text = raw.strip()
    try:
        if isinstance(current, bool):
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
            raise ValueError
        if isinstance(current, int):
            value = float(text)  # accepts 1e6
            if value != int(value):
                raise ValueError
            return int(value)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        kind = type(current).__name__.replace("bool", "true/false").replace("int", "whole number")
        raise ConfigError(
            name, f"--set {name}={raw!r}: expected a {kind}. Fix: e.g. --set {name}={current}."
        ) from None
    return text


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["lr=3e-4", "model.dim=512"]`` → raw strings by key (each kind coerces them by field)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f"--set {pair!r} is not KEY=VALUE. Fix: e.g. --set max_steps=500.")
        out[key.strip()] = value
    return out


def load_toml(path: Path) -> dict[str, Any]:
    """A ``--config`` file's settings (its optional ``name`` key is the run's, not the config's)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--config", f"config file {path} does not exist. Fix: check the path.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}. Fix: correct that line.") from None
    data.pop("name", None)
    return data
