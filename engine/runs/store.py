"""The run store: one private directory per run, and the ``run.json`` that describes it.

Layout of ``<runs>/<run-id>/`` (``<runs>`` is :func:`engine.locations.runs_dir`)::

    run.json        a :class:`engine.runs.meta.RunMeta`: kind, name, config, created, host, pid +
                    process start time, status, resume_argv… (fields and types: meta.py, README)
    events.jsonl    append-only events (:mod:`engine.runs.events`), written by the engine only
    engine.log      the engine process's stdout and stderr
    checkpoints/    written to a temporary name, then renamed (:func:`atomic_path`)
    control/        request files from the console (``stop``, ``checkpoint``), see session.py
    ...             whatever the engine adds (``tb/``, ``emissions.csv``)

``run.json`` is read and written only as a :class:`~engine.runs.meta.RunMeta`. It is replaced
atomically (write a temporary file, fsync, rename) so a reader never sees half of it, and every
read-modify-write holds an ``flock`` on ``.run.lock`` so the console (launch, resume) and the
engine (pid, final status) never lose each other's updates. Torch-free.

The store never follows a symbolic link it did not create: a run directory, ``run.json``,
``events.jsonl``, ``control/`` or ``checkpoints/`` that is a link is refused with a message naming
it (:meth:`RunDir.check_real`, ``lstat``), files are opened ``O_NOFOLLOW`` (:func:`open_nofollow`),
and ``canvas rm`` deletes only real directories inside the store. Everything created here is
owner-only (0600 files, 0700 folders).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import locations
from engine.runs.errors import RunStoreError
from engine.runs.ids import is_run_id, new_run_id
from engine.runs.meta import RUN_SCHEMA_VERSION, RunKind, RunMeta
from engine.runs.names import by_short_hash, check_new_name

RUN_JSON = "run.json"
EVENTS = "events.jsonl"
ENGINE_LOG = "engine.log"
CHECKPOINTS = "checkpoints"
CONTROL = "control"
_LOCK = ".run.lock"

__all__ = [
    "RUN_SCHEMA_VERSION",
    "RunDir",
    "RunKind",
    "RunMeta",
    "RunStoreError",
    "atomic_path",
    "create_run",
    "list_runs",
    "now_iso",
    "open_nofollow",
    "require_real_dir",
    "resolve_run",
    "write_json_atomic",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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

    def check_real(self) -> None:
        """RunStoreError unless this run is a real directory (not a symbolic link) holding its
        parts as real files and directories: ``run.json``, ``events.jsonl``, ``control/`` and
        ``checkpoints/`` (the last three may be absent). The store never follows a link it did
        not create, so a linked part is refused before anything is written or deleted."""
        require_real_dir(self.path, "run directory")
        for part, is_dir in ((RUN_JSON, False), (EVENTS, False), (CONTROL, True), (CHECKPOINTS, True)):
            path = self.path / part
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise RunStoreError(_link_message(path, f"{part} of run {self.id}"))
            if is_dir and not stat.S_ISDIR(st.st_mode):
                raise RunStoreError(f"{path} is not a directory; move it away to use run {self.id}.")
            if not is_dir and not stat.S_ISREG(st.st_mode):
                raise RunStoreError(f"{path} is not a regular file; move it away to use run {self.id}.")

    def control_file(self, name: str) -> Path:
        """``control/<name>``, creating ``control/`` (owner-only) when missing; RunStoreError when
        the run directory or ``control/`` is a symbolic link or not a directory."""
        require_real_dir(self.path, "run directory")
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.control_dir, 0o700)
        require_real_dir(self.control_dir, f"control directory of run {self.id}")
        return self.control_dir / name

    def read_meta(self) -> RunMeta:
        """``run.json`` as a :class:`RunMeta`; RunStoreError when it is missing, unreadable or
        holds a field of the wrong type (the message names the field and the file)."""
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunStoreError(f"{self.path} is not a run: it has no {RUN_JSON}.") from None
        except (OSError, ValueError) as exc:
            raise RunStoreError(f"cannot read {self.run_json}: {exc}") from None
        return RunMeta.from_json(data, self.run_json)

    def write_meta(self, meta: RunMeta) -> None:
        """Replace run.json with ``meta`` atomically. Hold :meth:`locked` around the read that
        ``meta`` came from, or use :meth:`update_meta`, so no concurrent update is lost."""
        write_json_atomic(self.run_json, meta.to_json())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock across a read-modify-write of run.json (advisory, ``flock``)."""
        import fcntl

        require_real_dir(self.path, "run directory")
        fd = open_nofollow(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600, "run lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def update_meta(self, **fields: Any) -> RunMeta:
        """Set ``fields`` of run.json atomically, under the lock, and return the new record.

        ValueError names a field :class:`RunMeta` does not declare (a typo) or a value of the
        wrong type; fields a newer engine wrote are kept as they are.
        """
        with self.locked():
            meta = self.read_meta().with_changes(**fields)
            self.write_meta(meta)
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


def _link_message(path: Path, what: str) -> str:
    try:
        target = f" (it points to {os.readlink(path)})"
    except OSError:
        target = ""
    return (
        f"{path} is a symbolic link{target}; the run store never follows a link it did not create, "
        f"so the {what} is refused. Remove the link (`rm {path}`), leaving its target untouched, "
        "or move the real files into place."
    )


def require_real_dir(path: Path, what: str = "directory") -> None:
    """RunStoreError naming ``path`` unless it is a real directory: not a symbolic link, checked
    with ``lstat`` so a link is never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise RunStoreError(f"{path} does not exist (the {what} is gone).") from None
    if stat.S_ISLNK(st.st_mode):
        raise RunStoreError(_link_message(path, what))
    if not stat.S_ISDIR(st.st_mode):
        raise RunStoreError(f"{path} is not a directory; the {what} must be one.")


def open_nofollow(path: Path, flags: int, mode: int = 0o600, what: str = "file") -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (``O_NOFOLLOW``) with a RunStoreError
    naming it, and creates files owner-only (``mode``, default 0600)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError:
        if os.path.islink(path):
            raise RunStoreError(_link_message(Path(path), what)) from None
        raise


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
    kind: RunKind | str,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    resume_argv: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> RunDir:
    """Create a new, owner-only run directory with its ``run.json`` (status ``created``).

    ``name`` defaults to ``<kind>-<last 6 characters of the id>``; a name another run holds is
    refused (:func:`engine.runs.names.check_new_name`). ``config`` is stored as given
    (JSON-serialisable). ``resume_argv`` is the command line :func:`engine.runs.control.resume_run`
    runs to continue the run from its last checkpoint; ``{run_dir}`` in it is replaced by the run
    directory at resume time, so the store can be moved. ``kind`` must be a :class:`RunKind`
    (RunStoreError listing them otherwise); ``extra`` sets further :class:`RunMeta` fields
    (ValueError for a field it does not declare).
    """
    kind = RunKind.parse(kind)
    # Everything is checked before the directory exists, so a refusal leaves nothing behind.
    meta = RunMeta(
        schema=RUN_SCHEMA_VERSION,
        kind=kind,
        name=check_new_name(name, root) if name else "",  # engine.runs.names: allowed and unique
        config=config or {},
        status="created",
        resume_argv=list(resume_argv) if resume_argv is not None else None,
    ).with_changes(**(extra or {}))
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
    run.write_meta(
        meta.with_changes(
            id=run_id,
            name=meta.name or f"{kind.value}-{run_id[-6:]}",
            created=now_iso(),
            host=socket.gethostname(),
        )
    )
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
            parts.append(f"{run.id} ({meta.name}, {meta.kind}, created {meta.created})")
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
            if run.read_meta().name == ref:
                by_name.append(run)
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise RunStoreError(
            f"{len(by_name)} runs are named {ref!r}: {_describe(by_name)}. Name one by its id "
            "(or a unique start of it)."
        )
    by_hash = by_short_hash(ref, runs)  # the random part at the end of an id, like a git short hash
    if by_hash is not None:
        return by_hash
    store = Path(root) if root is not None else locations.runs_dir()
    raise RunStoreError(
        f"no run matches {ref!r} in {store} (by id, id prefix, name or short hash); list runs with "
        "`canvas runs`"
        f" (and check --home / {locations.HOME_ENV} if runs are kept elsewhere)."
    )
