"""Stop / checkpoint / resume / delete a run, as one call a worker thread makes. No Textual.

Each returns the sentence to show; refusals from the run store (:class:`RunStoreError`, e.g.
"cannot resume: it finished") propagate with their one-paragraph message.
"""

from __future__ import annotations

from pathlib import Path

from engine.runs.store import RunDir, RunStoreError

CONTROL_ACTIONS = ("stop", "checkpoint", "resume", "delete")


def run_label(run: RunDir) -> str:
    """How a message names a run: its name (what the user typed and sees in the list), else its id."""
    try:
        return run.read_meta().name or run.id
    except RunStoreError:
        return run.id


def perform(action: str, run_path: str | Path) -> str:
    """Do ``action`` on the run; the sentence to show names the run by its name. A refusal
    (:class:`RunStoreError`) is raised again with the run's name for its id where it says "run <id>"
    (commands it suggests keep the id, which always resolves)."""
    run = RunDir(Path(run_path))
    name = run_label(run)
    try:
        return _perform(action, run, name)
    except RunStoreError as exc:
        text = str(exc)
        if name != run.id:
            text = text.replace(f"run {run.id}", f"run {name}")
        raise RunStoreError(text) from exc


def _perform(action: str, run: RunDir, name: str) -> str:
    from engine.runs import control  # signals and process start-up: not at the console's start-up
    from engine.runs.status import run_status

    if action == "stop":
        before = run_status(run, tail=0)
        control.stop_run(run)
        if before.is_live and not before.responsive:  # stopped with kill -STOP, silent, or stuck
            return (
                f"Run {name} is not responding ({before.message}). The stop request waits until it "
                f"runs again; `canvas stop --force {run.id}` ends it now."
            )
        return (
            f"Asked run {name} to stop: it finishes its step, checkpoints and exits (resume it later with r)."
        )
    if action == "checkpoint":
        control.request_checkpoint(run)
        return f"Asked run {name} to write a checkpoint at its next step."
    if action == "resume":
        if run.read_meta().slurm_job_id:  # resubmitted: the job runs on the cluster's nodes
            from engine.cluster.sbatch import resubmit

            return f"Resubmitted run {name} as SLURM job {resubmit(run)}."
        pid = control.resume_run(run)
        return f"Resumed run {name} from its last checkpoint (pid {pid})."
    if action == "delete":
        control.delete_run(run, force=True)
        return f"Deleted run {name}."
    raise ValueError(f"unknown action {action!r}")
