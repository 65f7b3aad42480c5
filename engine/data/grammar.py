"""The grammar every data spec shares: ``[WEIGHT "*"] TARGET ["#" COLUMN] ["?" KEY=VALUE ("&" KEY=VALUE)*]``.

Two languages are built on it: the pre-training data spec (:mod:`engine.data.spec`, a comma-separated
mix of sources) and the fine-tuning chat data spec (:mod:`engine.finetune.chat_data.spec`, one
source of conversations). They differ in which targets and options they accept, but a user who
learned one should not be surprised by the other: the ``?key=value&…`` tail, the Hub name
``hf:NAME[:CONFIG][@SPLIT]`` and the number options are read by the same code here and rejected
with the same messages.

Torch-free and ``datasets``-free: the console parses specs while the user types. Every error is a
:class:`ConfigError` naming the spec (``raw``), the offending part and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.config.errors import ConfigError

#: A well-formed option tail: ``KEY=VALUE`` pairs joined by ``&`` (values may be empty).
OPTIONS_RE = re.compile(r"^[A-Za-z_]+=[^&=]*(?:&[A-Za-z_]+=[^&=]*)*$")
#: A leading ``W*`` weight, e.g. ``0.7*notes.txt``.
WEIGHT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*(.*)$", re.S)
#: A Hub dataset name: ``owner/name`` or a bare canonical name.
HUB_NAME_RE = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")
#: What marks a Hub target.
HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class HubTarget:
    """The parts of ``hf:NAME[:CONFIG][@SPLIT]``; ``split`` defaults to ``train``."""

    name: str
    config: str | None = None
    split: str = "train"


def split_weight(raw: str) -> tuple[str | None, str]:
    """``(weight_text, rest)`` for ``"0.7*a.txt"``; ``(None, raw)`` when there is no weight."""
    match = WEIGHT_RE.match(raw)
    if not match:
        return None, raw
    return match.group(1), match.group(2).strip()


def split_options(text: str) -> tuple[str, str | None]:
    """``(head, tail)`` around the last ``?``; ``tail`` None when there is no ``?`` at all.

    Whether the tail really is an option list (and not part of a file name) is the caller's call:
    see :func:`is_option_list`.
    """
    head, sep, tail = text.rpartition("?")
    return (head, tail) if sep else (text, None)


def is_option_list(tail: str) -> bool:
    """True when ``tail`` is ``KEY=VALUE`` pairs joined by ``&``."""
    return bool(OPTIONS_RE.match(tail))


def parse_options(tail: str) -> dict[str, str]:
    """``"a=1&b=x"`` → ``{"a": "1", "b": "x"}`` (values kept as typed; a later key wins)."""
    options: dict[str, str] = {}
    for pair in tail.split("&"):
        key, _, value = pair.partition("=")
        options[key] = value
    return options


def split_column(body: str) -> tuple[str, str | None]:
    """``(target, column)`` for ``"data.jsonl#body"``; a ``#`` followed by a path is not a column."""
    head, sep, tail = body.rpartition("#")
    if sep and tail and "/" not in tail and "\\" not in tail:
        return head, tail
    return body, None


def is_hub_target(body: str) -> bool:
    return body.strip().lower().startswith(HUB_PREFIX)


def parse_hub_target(body: str, raw: str, field_name: str) -> HubTarget:
    """Read ``hf:NAME[:CONFIG][@SPLIT]``; a malformed name is an error quoting ``raw``."""
    rest = body.strip()[len(HUB_PREFIX) :]
    name_cfg, _, split = rest.partition("@")
    repo, _, config = name_cfg.partition(":")
    if not HUB_NAME_RE.fullmatch(repo or ""):
        raise ConfigError(
            field_name,
            f"data source {raw!r}: {repo!r} is not a Hub dataset name. Fix: "
            "write `hf:NAME[:CONFIG][@SPLIT]`, e.g. `hf:allenai/c4:en@train`.",
        )
    return HubTarget(name=repo, config=config or None, split=split or "train")


def positive_int(value: Any, raw: str, field_name: str) -> int:
    """The ``limit=N`` option: a positive whole number, ``_`` separators allowed (``250_000``)."""
    try:
        number = int(str(value).replace("_", ""))
    except ValueError:
        number = 0
    if number <= 0:
        raise ConfigError(
            field_name,
            f"data source {raw!r}: limit={value!r} is not a positive whole "
            "number. Fix: e.g. `?limit=250000`.",
        )
    return number


def positive_float(value: Any, raw: str, field_name: str) -> float:
    """A source weight (``W*`` or ``weight=W``): a number above zero."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise ConfigError(
            field_name,
            f"data source {raw!r}: weight {value!r} is not a positive number. "
            "Fix: e.g. `0.7*a.txt,0.3*b.txt`.",
        )
    return number


def boolean(value: Any, raw: str, field_name: str) -> bool:
    """A yes/no option (``streaming=1``): 1/0, true/false, yes/no, on/off, or a TOML boolean."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(
        field_name,
        f"data source {raw!r}: streaming={value!r} is not a yes/no value. "
        "Fix: `streaming=1` or `streaming=0`.",
    )
