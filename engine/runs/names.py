"""Run names and short references: a name is unique in the store, and the random part at the end
of a run id (``22f9d472`` in ``20261127-153012-123-22f9d472``, or a unique start of it) names a run
the way a short hash names a git commit. Torch-free.

:func:`check_new_name` runs before a run directory is created (:func:`engine.runs.store.create_run`),
so a refused name leaves nothing behind; :func:`by_short_hash` is the last way
:func:`engine.runs.store.resolve_run` tries a reference.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from engine.runs.errors import RunStoreError

if TYPE_CHECKING:
    from engine.runs.store import RunDir

#: The shortest start of an id's random part accepted as a reference (git's minimum too).
MIN_SHORT_HASH = 4
_HEX_RE = re.compile(r"^[0-9a-f]+$")


def short_hash(run_id: str) -> str:
    """The random part at the end of a run id (what ``canvas runs`` users see and copy)."""
    return run_id.rsplit("-", 1)[-1]


def check_new_name(name: str, root: Path | None = None) -> str:
    """``name`` when a new run may take it: the allowed characters, not shaped like a run id, and
    held by no run in the store (also not as an automatic ``<kind>-<id suffix>`` name). A refusal
    names the run that holds it and the fix."""
    from engine.runs.store import _check_name, list_runs

    _check_name(name)
    for run in list_runs(root):
        try:
            meta = run.read_meta()
        except RunStoreError:  # an unreadable run.json holds no name
            continue
        if meta.name == name:
            raise RunStoreError(
                f"run name {name!r} is taken by run {run.id} ({meta.kind}, {meta.status}, created "
                f"{meta.created}); run names are unique so that `canvas logs {name}` means one run. "
                "Fix: choose another --name, or leave --name out for an automatic one."
            )
    return name


def by_short_hash(ref: str, runs: list[RunDir]) -> RunDir | None:
    """The one run whose id ends in the random part ``ref`` starts (at least :data:`MIN_SHORT_HASH`
    hex digits); None when none does; RunStoreError listing them when several do."""
    ref = ref.lower()
    if len(ref) < MIN_SHORT_HASH or not _HEX_RE.match(ref):
        return None
    found = [run for run in runs if short_hash(run.id).startswith(ref)]
    if len(found) > 1:
        from engine.runs.store import _describe

        raise RunStoreError(
            f"{ref!r} is the start of the short hash of {len(found)} runs: {_describe(found)}. "
            "Give more characters of it."
        )
    return found[0] if found else None
