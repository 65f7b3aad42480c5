"""What the Chat screen can talk to, and the client it talks through. No Textual, no torch.

A :class:`ModelChoice` is one column of the Chat screen: a model (a run id, a model folder or a
Hub id), a checkpoint, and for a fine-tune whether its adapter is on. Two choices that differ only
in ``adapter`` share one loaded worker (:meth:`ModelChoice.load_key`): the base and Model 2 are
compared on the same weights, without loading twice.

:func:`pickable_runs` lists the runs of the store that hold a checkpoint, for the model picker;
:func:`choice_for` turns what a user typed (``canvas chat MODEL``) into a choice. The real worker
is :class:`engine.serve.client.WorkerClient`; :class:`ChatClient` is the part of it the screen
uses, so tests can stand in a scripted client for deterministic snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from engine.runs.meta import RunKind
from engine.runs.status import run_status
from engine.runs.store import RunDir, RunStoreError, list_runs, resolve_run
from engine.serve import protocol
from engine.train.layout import list_checkpoints, read_pointer

#: The most columns side by side.
MAX_COLUMNS = 3


@dataclass(frozen=True)
class ModelChoice:
    """One model to chat with. ``model`` is what the worker's ``load`` gets; ``run_path`` is set
    for our runs (chats are saved under ``<run>/chats/``); ``kind`` is the run's kind, or ``""``
    for a folder or Hub model."""

    model: str
    label: str
    checkpoint: str | None = None
    adapter: bool = True
    run_path: str | None = None
    kind: str = ""

    def load_key(self) -> tuple[str, str | None]:
        """Choices with the same key share one worker (the adapter is switched per request)."""
        return (self.run_path or self.model, self.checkpoint)

    def title(self) -> str:
        """The column's title: the label, the checkpoint, and "base" for a fine-tune without its adapter."""
        parts = [self.label]
        if self.checkpoint:
            parts.append(f"@{self.checkpoint}")
        if self.kind == RunKind.FINETUNE and not self.adapter:
            parts.append("(base, adapter off)")
        return " ".join(parts)

    def with_adapter(self, on: bool) -> ModelChoice:
        return replace(self, adapter=on)


@dataclass
class PickableRun:
    """A run that can be chatted with, as the picker shows it."""

    id: str
    name: str
    kind: str
    status: str
    live: bool
    path: str
    checkpoints: list[str] = field(default_factory=list)  # "best", "last", then "step-N", newest first

    def choice(self, checkpoint: str | None = None, adapter: bool = True) -> ModelChoice:
        return ModelChoice(
            model=self.path,
            label=self.name or self.id,
            checkpoint=checkpoint,
            adapter=adapter,
            run_path=self.path,
            kind=self.kind,
        )


def checkpoint_names(run: RunDir) -> list[str]:
    """``best`` and ``last`` when they exist, then every step, newest first."""
    found = list_checkpoints(run.checkpoints_dir)
    names = [p for p in ("best", "last") if read_pointer(run.checkpoints_dir, p) is not None]
    if found and "last" not in names:
        names.append("last")
    return names + [path.name for _, path in reversed(found)]


def pickable_runs(root: Path | None = None) -> list[PickableRun]:
    """Pre-training and fine-tune runs with at least one checkpoint, newest first; ``live`` for a
    run that is still training (its newest checkpoint is read without disturbing it)."""
    out = []
    for run in list_runs(root):
        try:
            meta = run.read_meta()
        except RunStoreError:
            continue
        if str(meta.kind) not in (RunKind.PRETRAIN, RunKind.FINETUNE):
            continue
        names = checkpoint_names(run)
        if not names and not (run.path / "adapter").is_dir():
            continue
        try:
            status = run_status(run, meta, tail=0)
            state, live = status.state, status.alive and status.state in ("running", "starting")
        except (RunStoreError, OSError):
            state, live = meta.status, False
        out.append(
            PickableRun(run.id, meta.name, str(meta.kind), state, live, str(run.path), names or ["last"])
        )
    return out


def choice_for(ref: str, checkpoint: str | None = None, adapter: bool = True) -> ModelChoice:
    """A choice for what a user typed: a run (id, id prefix or name), else a model folder or a Hub
    id (the worker says so when it cannot load it)."""
    path = Path(ref).expanduser()
    if (path / "run.json").is_file():
        return choice_for_run(RunDir(path.resolve()), checkpoint, adapter)
    try:
        run = resolve_run(ref)
    except RunStoreError:
        if path.exists():
            resolved = path.resolve()
            return ModelChoice(str(resolved), resolved.name, checkpoint, adapter)
        return ModelChoice(ref, ref, checkpoint, adapter)
    return choice_for_run(run, checkpoint, adapter)


def choice_for_run(run: RunDir, checkpoint: str | None = None, adapter: bool = True) -> ModelChoice:
    """A choice for one of our runs (the worker loads its folder; chats are saved under it)."""
    try:
        meta = run.read_meta()
        name, kind = meta.name, str(meta.kind)
    except RunStoreError:
        name, kind = "", ""
    return ModelChoice(str(run.path), name or run.id, checkpoint, adapter, str(run.path), kind)


# ------------------------------------------------------------------------------------ the client
class ChatStream(Protocol):
    """The part of :class:`engine.serve.client.GenerationStream` the screen uses."""

    def __iter__(self) -> Iterator[protocol.Delta]: ...

    def cancel(self) -> None: ...

    @property
    def done(self) -> protocol.Done | None: ...


class ChatClient(Protocol):
    """The part of :class:`engine.serve.client.WorkerClient` the screen uses (from threads only)."""

    def load(
        self,
        model: str,
        *,
        checkpoint: str | None = None,
        adapter: str | None = None,
        device: str = "auto",
        on_progress: Callable[[protocol.Progress], None] | None = None,
        timeout: float | None = None,
    ) -> protocol.Ready: ...

    def generate(self, **fields: Any) -> ChatStream: ...

    def render(self, **fields: Any) -> protocol.Rendered: ...

    def close(self, timeout: float = 5.0) -> None: ...


#: Starts a client for one model (the choice says where its log goes).
ClientFactory = Callable[[ModelChoice], ChatClient]


def spawn_worker(choice: ModelChoice, env: Mapping[str, str] | None = None) -> ChatClient:
    """A new inference worker process (``python -m engine.serve.worker``); its stderr goes to
    ``chat-worker.log`` in the chats folder, and its end is quoted if it dies."""
    from canvas_tui.chat_store import chats_dir_for
    from engine.serve.client import WorkerClient

    return WorkerClient.spawn(env=env, log_path=chats_dir_for(choice) / "chat-worker.log")


def error_text(exc: BaseException) -> str:
    """One paragraph for a failed load or generate: the worker's message, naming the field."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    field_name = getattr(exc, "field", None)
    return f"{field_name}: {message}" if field_name and field_name not in message else str(message)
