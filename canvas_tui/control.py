"""Stop / checkpoint / resume / delete a run, as one call a worker thread makes. No Textual.

Each returns the sentence to show; refusals from the run store (:class:`RunStoreError`, e.g.
"cannot resume: it finished") propagate with their one-paragraph message.
"""

from __future__ import annotations

from pathlib import Path

from engine.runs import control
from engine.runs.store import RunDir

CONTROL_ACTIONS = ("stop", "checkpoint", "resume", "delete")


def perform(action: str, run_path: str | Path) -> str:
    run = RunDir(Path(run_path))
    if action == "stop":
        control.stop_run(run)
        return (
            f"Asked run {run.id} to stop: it finishes its step, checkpoints and exits "
            f"(resume it later with r)."
        )
    if action == "checkpoint":
        control.request_checkpoint(run)
        return f"Asked run {run.id} to write a checkpoint at its next step."
    if action == "resume":
        pid = control.resume_run(run)
        return f"Resumed run {run.id} from its last checkpoint (pid {pid})."
    if action == "delete":
        control.delete_run(run, force=True)
        return f"Deleted run {run.id}."
    raise ValueError(f"unknown action {action!r}")
