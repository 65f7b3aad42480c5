"""Messages that worker threads post to the UI. Workers never touch widgets; handlers on the main
thread own every state change (harlequin's rule, STYLE.md §3).

High-rate messages carry *batches* (one message per chunk read, toolong's ``NewBreaks``), and
status updates are replaceable so a burst collapses to the latest one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:  # for the hints only: the console's first paint does not import the view model
    from canvas_tui.runs_model import RunRow
    from canvas_tui.screens.chat import Job
    from canvas_tui.viewmodel import RunView
    from engine.runs.events import Event
    from engine.runs.meta import RunMeta
    from engine.runs.status import RunStatus
    from engine.serve.protocol import Done


class RunsScanned(Message):
    """A fresh list of run rows (newest first)."""

    def __init__(self, rows: list[RunRow]) -> None:
        super().__init__()
        self.rows = rows


class HistorySketch(Message):
    """A quick, sampled view of a long history for the first paint."""

    def __init__(self, run_id: str, view: RunView) -> None:
        super().__init__()
        self.run_id = run_id
        self.view = view


class HistoryLoaded(Message):
    """The full history, built off the UI thread; replaces any sketch. ``log_lines``: the end of
    engine.log read at the same time (the log pane merges them with the events in time order)."""

    def __init__(
        self, run_id: str, view: RunView, garbage: int = 0, log_lines: list[str] | None = None
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.view = view
        self.garbage = garbage
        self.log_lines = log_lines or []


class RunEvents(Message):
    """Typed events appended since the last batch, in file order; ``skipped``: the reader's count
    of unreadable lines so far (the screen says so once)."""

    def __init__(self, run_id: str, records: list[Event], skipped: int = 0) -> None:
        super().__init__()
        self.run_id = run_id
        self.records = records
        self.skipped = skipped


class LogLines(Message):
    """New complete lines of ``engine.log`` (decoded, untrusted text)."""

    def __init__(self, run_id: str, lines: list[str]) -> None:
        super().__init__()
        self.run_id = run_id
        self.lines = lines


class RunStatusChanged(Message):
    """The run's true status and run.json, polled about once a second; replaceable. ``stopping``:
    a stop was requested (``control/stop`` exists) and the run has not ended yet."""

    def __init__(self, run_id: str, status: RunStatus, meta: RunMeta, stopping: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.status = status
        self.meta = meta
        self.stopping = stopping

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStatusChanged) and message.run_id == self.run_id


class CheckpointsScanned(Message):
    """The checkpoints that exist in a run's ``checkpoints/`` folder
    (:func:`canvas_tui.widgets.checkpoints.scan_checkpoints`), read again because it changed."""

    def __init__(self, run_id: str, found: list[Any]) -> None:
        super().__init__()
        self.run_id = run_id
        self.found = found


class ControlDone(Message):
    """A stop / checkpoint / resume / delete / launch finished; ``error`` says why it did not."""

    def __init__(
        self, action: str, run_id: str, text: str, error: bool = False, new_run_id: str | None = None
    ) -> None:
        super().__init__()
        self.action = action
        self.run_id = run_id
        self.text = text
        self.error = error
        self.new_run_id = new_run_id


class FinetuneChecked(Message):
    """The fine-tune preflight of the form's config number ``generation`` finished: ``preflight`` (an
    :class:`engine.finetune.preflight.Preflight`) on success, else the ``field`` and ``error`` to show."""

    def __init__(self, generation: int, preflight: Any = None, field: str = "", error: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.preflight = preflight
        self.field = field
        self.error = error


class BaseHint(Message):
    """What an empty fine-tune base means here (the newest pre-training run with a checkpoint, or
    ``None``), and names worth suggesting while the base is typed (run ids and names, presets)."""

    def __init__(
        self, newest: str | None, suggestions: list[str], usable: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__()
        self.newest = newest
        self.suggestions = suggestions
        #: ``(label, run id)`` of every pre-training run with a usable checkpoint, newest first
        self.usable = usable or []


# ------------------------------------------------------------------------------ a model's answer
# Posted by :func:`canvas_tui.screens.chat.stream_answer` (the Chat and the Arena screens): ``target``
# is what the answer belongs to there (a chat column, an arena side), ``job`` the request, so a
# handler drops what arrives for a request that was stopped or replaced.


class AnswerDelta(Message):
    """More text of an answer, as it streams (untrusted model output)."""

    def __init__(self, target: Any, job: Job, text: str) -> None:
        super().__init__()
        self.target = target
        self.job = job
        self.text = text


class AnswerDone(Message):
    """The answer ended: the worker's final reply (whole text, token counts, why it ended)."""

    def __init__(self, target: Any, job: Job, done: Done) -> None:
        super().__init__()
        self.target = target
        self.job = job
        self.done = done


class AnswerFailed(Message):
    """No answer: the request failed, or the worker went away (``error``: what to show)."""

    def __init__(self, target: Any, job: Job, error: str) -> None:
        super().__init__()
        self.target = target
        self.job = job
        self.error = error
