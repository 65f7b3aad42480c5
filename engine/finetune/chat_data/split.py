"""Holding out conversations for validation: a seeded split that is the same on every machine."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from engine.config.errors import ConfigError
from engine.finetune.chat_data.conversation import Conversation


def split_conversations(
    convs: Sequence[Conversation], val_fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """``(train, validation)``: a seeded shuffle picks ``ceil(val_fraction * n)`` held-out conversations.

    At least one is held out when ``val_fraction > 0`` and there are two or more, and at least one
    is always left to train on. Both parts keep the source's order, so the same inputs give the
    same split on every machine (``random.Random(seed)``, not the global generator).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(
            "val_fraction",
            f"val_fraction={val_fraction!r} must be at least 0 and below 1. Fix: e.g. 0.05 to hold "
            "out 5% of the conversations, or 0 for none.",
        )
    n = len(convs)
    held = 0
    if val_fraction > 0 and n >= 2:
        held = min(max(1, math.ceil(val_fraction * n)), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_ids = set(order[:held])
    train = [c for i, c in enumerate(convs) if i not in val_ids]
    val = [c for i, c in enumerate(convs) if i in val_ids]
    return train, val
