"""The run store: run directories, the event schema, the tail reader, detached engine processes
and their true status. Torch-free and Textual-free: the console imports all of it.

Console side: :func:`create_run`, :func:`launch_detached`, :func:`resolve_run`, :func:`list_runs`,
:func:`run_status`, :func:`summarize`, :class:`EventReader`, :func:`stop_run`,
:func:`request_checkpoint`, :func:`resume_run`, :func:`delete_run`.
Engine side: :func:`run_context` (an :class:`EngineSession` with ``emit``, ``stop_requested``,
``checkpoint_requested()``), :func:`atomic_path` for checkpoints. Schemas: :mod:`engine.runs.events`
(events.jsonl) and :mod:`engine.runs.meta` (run.json: :class:`RunMeta`, :class:`RunKind`).

The names below are imported on first use (PEP 562), not with the package: importing one submodule
(``engine.runs.meta`` for the runs list) does not pay for the writers, the session and the process
control that the console's first paint never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.runs.control import (
        delete_run,
        kill_run,
        launch_detached,
        request_checkpoint,
        resume_run,
        stop_run,
        wait_for_end,
    )
    from engine.runs.events import SCHEMA_VERSION
    from engine.runs.ids import new_run_id
    from engine.runs.meta import RUN_SCHEMA_VERSION, RunKind, RunMeta
    from engine.runs.process import ProcessIdentity, identify, is_alive, python_argv
    from engine.runs.reader import EventReader, LineTail, downsample, tail_text
    from engine.runs.session import EngineSession, EventWriter, run_context
    from engine.runs.status import RunStatus, RunSummary, run_status, summarize
    from engine.runs.store import RunDir, RunStoreError, atomic_path, create_run, list_runs, resolve_run

#: Where each public name lives (the submodule of this package).
_HOME = {
    "control": (
        "delete_run",
        "kill_run",
        "launch_detached",
        "request_checkpoint",
        "resume_run",
        "stop_run",
        "wait_for_end",
    ),
    "events": ("SCHEMA_VERSION",),
    "ids": ("new_run_id",),
    "meta": ("RUN_SCHEMA_VERSION", "RunKind", "RunMeta"),
    "process": ("ProcessIdentity", "identify", "is_alive", "python_argv"),
    "reader": ("EventReader", "LineTail", "downsample", "tail_text"),
    "session": ("EngineSession", "EventWriter", "run_context"),
    "status": ("RunStatus", "RunSummary", "run_status", "summarize"),
    "store": ("RunDir", "RunStoreError", "atomic_path", "create_run", "list_runs", "resolve_run"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "RUN_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "EngineSession",
    "EventReader",
    "EventWriter",
    "LineTail",
    "ProcessIdentity",
    "RunDir",
    "RunKind",
    "RunMeta",
    "RunStatus",
    "RunStoreError",
    "RunSummary",
    "atomic_path",
    "create_run",
    "delete_run",
    "downsample",
    "identify",
    "is_alive",
    "kill_run",
    "launch_detached",
    "list_runs",
    "new_run_id",
    "python_argv",
    "request_checkpoint",
    "resolve_run",
    "resume_run",
    "run_context",
    "run_status",
    "stop_run",
    "summarize",
    "tail_text",
    "wait_for_end",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _MODULE_OF)
