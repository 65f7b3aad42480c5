"""The run store: one private directory per run, and the ``run.json`` that describes it.

Layout of ``<runs>/<run-id>/`` (``<runs>`` is :func:`engine.locations.runs_dir`)::

    run.json        kind, name, config, created, host, pid + process start time, status, resume_argv
    events.jsonl    append-only events (:mod:`engine.runs.events`), written by the engine only
    engine.log      the engine process's stdout and stderr
    checkpoints/    written to a temporary name, then renamed (:func:`atomic_path`)
    control/        request files from the console (``stop``, ``checkpoint``), see session.py
    ...             whatever the engine adds (``tb/``, ``emissions.csv``)

``run.json`` is replaced atomically (write a temporary file, fsync, rename) so a reader never sees
half of it, and every read-modify-write holds an ``flock`` on ``.run.lock`` so the console (launch,
resume) and the engine (pid, final status) never lose each other's updates. Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import locations
from engine.runs.ids import is_run_id, new_run_id

RUN_JSON = "run.json"
EVENTS = "events.jsonl"
ENGINE_LOG = "engine.log"
CHECKPOINTS = "checkpoints"
CONTROL = "control"
_LOCK = ".run.lock"

#: Version of the run.json layout; bumped only when a field changes meaning.
RUN_SCHEMA_VERSION = 1

#: The kinds the engine knows today; other identifiers are accepted so later issues can add kinds.
KNOWN_KINDS = ("train", "finetune", "eval", "data")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class RunStoreError(Exception):
    """A user-facing problem with the run store (no such run, ambiguous name, refused action).

    The message is one paragraph that says what to do; front ends print it as it is.
    """


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds, the form every run.json timestamp uses."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunDir:
    """A run directory: paths of its parts plus atomic access to ``run.json``.

    Holds only the path, so it is cheap to create and always reads fresh data from disk: the
    engine in another process is the source of truth.
    """

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    @property
    def log_path(self) -> Path:
        return self.path / ENGINE_LOG

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def control_dir(self) -> Path:
        return self.path / CONTROL

    def exists(self) -> bool:
        return self.run_json.is_file()

    def read_meta(self) -> dict[str, Any]:
        """``run.json`` as a dict; raises RunStoreError when it is missing or unreadable."""
        try:
            return json.loads(self.run_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunStoreError(f"{self.path} is not a run: it has no {RUN_JSON}.") from None
        except (OSError, ValueError) as exc:
            raise RunStoreError(f"cannot read {self.run_json}: {exc}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock across a read-modify-write of run.json (advisory, ``flock``)."""
        import fcntl

        fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into run.json atomically and return the new contents."""
        with self.locked():
            meta = self.read_meta()
            meta.update(fields)
            write_json_atomic(self.run_json, meta)
            return meta

    def latest_checkpoint(self) -> Path | None:
        """The most recently completed checkpoint (file or directory), or None.

        Temporary names (leading ``.``, ``.tmp`` suffix) are in-progress writes and never count,
        nor do the ``best.json`` / ``last.json`` pointer files, which only name a checkpoint.
        """
        try:
            entries = [
                p for p in self.checkpoints_dir.iterdir() if not _is_temporary(p.name) and p.suffix != ".json"
            ]
        except FileNotFoundError:
            return None
        if not entries:
            return None
        return max(entries, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _is_temporary(name: str) -> bool:
    return name.startswith(".") or name.endswith(".tmp")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same directory, fsync, rename."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success rename it to ``final``.

    For checkpoints: ``with atomic_path(run.checkpoints_dir / "last.pt") as tmp: torch.save(s, tmp)``.
    The writer may create a file or a directory at the temporary path. A reader (or a resume after
    ``kill -9``) sees either the previous complete checkpoint or the new one, never half of one.
    On an exception the temporary file or directory is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        if final.is_dir() and tmp.is_dir():
            # A directory cannot replace a non-empty one in a single rename: move the old aside.
            old = final.with_name(f".{final.name}.{os.getpid()}.old.tmp")
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise RunStoreError(
            f"run name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit (names are typed on the command line, e.g. `canvas logs NAME`)."
        )
    if is_run_id(name):
        raise RunStoreError(f"run name {name!r} looks like a run id; choose a name that does not.")
    return name


def create_run(
    kind: str,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    resume_argv: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> RunDir:
    """Create a new, owner-only run directory with its ``run.json`` (status ``created``).

    ``name`` defaults to ``<kind>-<last 6 characters of the id>``; names need not be unique, but
    a name shared by several runs can then only be resolved by id. ``config`` is stored as given
    (JSON-serialisable). ``resume_argv`` is the command line :func:`engine.runs.control.resume_run`
    runs to continue the run from its last checkpoint; ``{run_dir}`` in it is replaced by the run
    directory at resume time, so the store can be moved.
    """
    if not _KIND_RE.match(kind):
        raise RunStoreError(f"run kind {kind!r} is not an identifier (e.g. {', '.join(KNOWN_KINDS)}).")
    root = locations.ensure_private_dir(Path(root) if root is not None else locations.runs_dir())
    for _ in range(100):
        run_id = new_run_id()
        path = root / run_id
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 collisions of 32 random bits within one millisecond
        raise RunStoreError(f"could not create a unique run directory under {root}")
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    run = RunDir(path)
    (path / CHECKPOINTS).mkdir(mode=0o700)
    meta: dict[str, Any] = {
        "schema": RUN_SCHEMA_VERSION,
        "id": run_id,
        "kind": kind,
        "name": _check_name(name) if name else f"{kind}-{run_id[-6:]}",
        "config": config or {},
        "created": now_iso(),
        "host": socket.gethostname(),
        "status": "created",
        "message": "",
        "pid": None,
        "pid_start_time": None,
        "pid_start_ticks": None,
        "boot_id": None,
        "started": None,
        "ended": None,
        "attempts": 0,
        "argv": None,
        "resume_argv": resume_argv,
        "total_steps": None,
    }
    meta.update(extra or {})
    write_json_atomic(run.run_json, meta)
    for part in (EVENTS, ENGINE_LOG):
        os.close(os.open(path / part, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    return run


def list_runs(root: Path | None = None) -> list[RunDir]:
    """All runs in the store, oldest first (ids sort by creation time)."""
    root = Path(root) if root is not None else locations.runs_dir()
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except FileNotFoundError:
        return []
    return [RunDir(p) for p in entries if is_run_id(p.name) and (p / RUN_JSON).is_file()]


def _describe(runs: list[RunDir]) -> str:
    parts = []
    for run in runs:
        try:
            meta = run.read_meta()
            parts.append(f"{run.id} ({meta.get('name')}, {meta.get('kind')}, created {meta.get('created')})")
        except RunStoreError:
            parts.append(run.id)
    return "; ".join(parts)


def resolve_run(ref: str, root: Path | None = None) -> RunDir:
    """Find a run by exact id, unique id prefix, or exact name (in that order).

    Raises RunStoreError listing the candidates when the reference matches several runs, and
    naming the store when it matches none.
    """
    ref = ref.strip()
    runs = list_runs(root)
    if not ref:
        raise RunStoreError("give a run id, id prefix or name (list them with `canvas runs`).")
    for run in runs:
        if run.id == ref:
            return run
    by_prefix = [run for run in runs if run.id.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise RunStoreError(
            f"{ref!r} is the start of {len(by_prefix)} run ids: {_describe(by_prefix)}. "
            "Give more characters of the id."
        )
    by_name = []
    for run in runs:
        with contextlib.suppress(RunStoreError):
            if run.read_meta().get("name") == ref:
                by_name.append(run)
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise RunStoreError(
            f"{len(by_name)} runs are named {ref!r}: {_describe(by_name)}. Name one by its id "
            "(or a unique start of it)."
        )
    store = Path(root) if root is not None else locations.runs_dir()
    raise RunStoreError(
        f"no run matches {ref!r} in {store} (by id, id prefix or name); list runs with `canvas runs`"
        f" (and check --home / {locations.HOME_ENV} if runs are kept elsewhere)."
    )
