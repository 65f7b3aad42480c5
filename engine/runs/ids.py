"""Run ids: unique, sortable by creation time, safe to use as a directory name.

An id looks like ``20261127-153012-123-9f3a1c07``: UTC date, time, milliseconds, then 32 random bits.
Sorting ids as strings sorts runs by the time they were created, so ``ls`` and ``canvas runs`` agree
without opening ``run.json``. Two runs started in the same second (or millisecond, by two users on
one NFS home) still get distinct ids from the random part, and :func:`engine.runs.store.create_run`
creates the directory with ``mkdir(exist_ok=False)`` and retries, so a collision can never make two
runs share a directory. Torch-free.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

#: The shape of an id; anything else in the run-store root is not a run and is ignored.
RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-\d{3}-[0-9a-f]{8}$")


def new_run_id(now: datetime | None = None) -> str:
    """A fresh id for a run created at ``now`` (default: the current UTC time)."""
    import secrets  # here: the console's start-up lists ids, it makes none

    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S") + f"-{now.microsecond // 1000:03d}"
    return f"{stamp}-{secrets.token_hex(4)}"


def is_run_id(text: str) -> bool:
    """True when ``text`` has the shape of a run id (it may still not exist)."""
    return bool(RUN_ID_RE.match(text))


def id_time(run_id: str) -> datetime | None:
    """The UTC creation time encoded in an id, or None when ``run_id`` is not one."""
    if not is_run_id(run_id):
        return None
    return datetime.strptime(run_id[:19], "%Y%m%d-%H%M%S-%f").replace(tzinfo=timezone.utc)
