"""Reading settings the way every run kind's config does: TOML files, ``--set KEY=VALUE`` pairs,
unknown-key errors with a "did you mean", and ``--set`` strings coerced to a field's type.

One public home so each kind's config module (pre-training, fine-tuning, and the kinds to come)
reads keys the same way and says the same thing about a mistyped one. Torch-free.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError

#: How a ``--set`` value spells a boolean (case-insensitive).
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")

#: The largest whole number a key may hold: a step, token or seed count must fit the engine's
#: 64-bit counters (torch's seed, numpy's generators, step tensors).
MAX_INT = 2**63 - 1

#: Text keys that also take a TOML value of another type, converted to their text form:
#: ``compile = true`` (the key is auto / true / false), ``base_checkpoint = 500`` (a step number).
TEXT_ALSO = {"compile": (bool,), "base_checkpoint": (int,)}


def kind_name(example: Any) -> str:
    """How an error names the type of a key whose default is ``example``."""
    if isinstance(example, bool):
        return "true or false"
    if isinstance(example, int):
        return "whole number"
    if isinstance(example, float):
        return "number"
    return "text"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def check_value(name: str, value: Any, example: Any, source: str | None = None) -> Any:
    """``value`` for the key ``name`` whose default is ``example``, checked against the default's type
    and returned in it; :class:`ConfigError` names the key, the value, the source and a fix.

    Booleans are not numbers (``max_steps = true`` is refused), a whole-number key refuses a float
    (``seed = 1e23``) and anything past :data:`MAX_INT`, a number key takes a whole number but
    refuses non-finite values (``nan``, ``inf``), a text key refuses numbers, lists and tables. The
    same checks serve TOML files, ``--set`` and the console's form (both go through :func:`coerce`).
    """
    where = f"{source}: " if source else ""

    def refuse(why: str) -> ConfigError:
        if source == "--set":
            return ConfigError(name, f"--set {name}={value} {why}. Fix: e.g. --set {name}={_toml(example)}.")
        return ConfigError(
            name, f"{where}{name} = {_toml(value)} {why}. Fix: e.g. {name} = {_toml(example)}."
        )

    if isinstance(example, bool):
        if not isinstance(value, bool):
            raise refuse("must be true or false")
        return value
    if isinstance(example, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("must be a whole number")
        if abs(value) > MAX_INT:
            raise refuse(f"is too large (a whole number of at most {MAX_INT:,})")
        return value
    if isinstance(example, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise refuse("must be a number")
        if not math.isfinite(value):
            raise refuse("is not a finite number")
        return float(value)
    if isinstance(example, str):
        if isinstance(value, TEXT_ALSO.get(name, ())):
            return _toml(value) if isinstance(value, bool) else str(value)
        if not isinstance(value, str):
            raise refuse("must be text")
        return value
    return value


def check_types(config: Any, source: str | None = None) -> None:
    """:func:`check_value` for every scalar field of the dataclass ``config`` (its default's type),
    so a config built any way (TOML, ``--set``, the console, run.json) is refused the same way."""
    for f in dataclasses.fields(config):
        if f.default is dataclasses.MISSING:
            continue  # a nested config (the model shape) checks itself
        value = getattr(config, f.name)
        checked = check_value(f.name, value, f.default, source)
        if type(checked) is not type(value):  # 1 for a float key, true for compile
            setattr(config, f.name, checked)


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
    value: Any = text
    try:
        if isinstance(current, bool):
            if text.lower() not in (*TRUE, *FALSE):
                raise ValueError
            value = text.lower() in TRUE
        elif isinstance(current, int):
            if text.lstrip("+-").isdigit():
                value = int(text)
            else:
                number = float(text)  # accepts 1e6
                if not math.isfinite(number) or number != int(number):
                    raise ValueError
                value = int(number)
        elif isinstance(current, float):
            value = float(text)
    except (ValueError, OverflowError):
        kind = type(current).__name__.replace("bool", "true/false").replace("int", "whole number")
        raise ConfigError(
            name, f"--set {name}={raw!r}: expected a {kind}. Fix: e.g. --set {name}={current}."
        ) from None
    return check_value(name, value, current, "--set")


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
