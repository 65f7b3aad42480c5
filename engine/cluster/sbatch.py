"""A pre-training run as a SLURM batch job: ``canvas train … --slurm``. Torch-free.

:func:`start_slurm_run` checks the SLURM flags (:meth:`SlurmSpec.check`) and finds ``sbatch``
before anything is created, then creates the run directory (on the shared file system: the run
store under ``CANVAS_HOME``), writes ``<run>/slurm.sbatch`` (:func:`render`) and submits it with
``sbatch --parsable``, recording the job id in run.json (``slurm_job_id``).

The script runs one ``srun`` task per node, each a ``torchrun`` of ``--nproc-per-node`` processes;
the nodes meet at a c10d rendezvous on the allocation's first node
(``scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1``). The worker always runs with
``--resume-auto``: it resumes when the run has a checkpoint, so a requeued job (``--requeue``: node
failure, preemption) or the same script submitted again continues from the last checkpoint. With
``--time``, SLURM sends SIGTERM two minutes before the limit (``--signal=TERM@120``): the engine
stops after the step with a checkpoint instead of being killed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config.errors import ConfigError

if TYPE_CHECKING:
    from engine.config.train import TrainConfig
    from engine.runs.store import RunDir

SCRIPT = "slurm.sbatch"
#: SLURM's ``--time`` forms with hours: ``HH:MM:SS`` and ``D-HH:MM:SS`` (minutes and seconds < 60).
_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$")
#: Partition and account names: no spaces, quotes or newlines (they go into ``#SBATCH`` lines).
_NAME = re.compile(r"^[A-Za-z0-9_.,+\-]{1,128}$")
SUBMIT_TIMEOUT_S = 60.0
PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SlurmSpec:
    """The allocation: ``--nodes``, ``--gpus-per-node`` (0: CPU processes, ``nproc`` of them a node),
    ``--partition``, ``--time``, ``--account`` and extra ``#SBATCH`` options."""

    nodes: int = 1
    gpus_per_node: int = 0
    partition: str = ""
    time: str = ""
    account: str = ""
    sbatch_args: tuple[str, ...] = field(default_factory=tuple)
    nproc: int = 1

    @property
    def procs_per_node(self) -> int:
        return self.gpus_per_node if self.gpus_per_node > 0 else self.nproc

    def check(self) -> SlurmSpec:
        """Refuse a value SLURM or the script cannot take, naming the flag and the fix."""
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            raise ConfigError(
                "nodes",
                f"--nodes {self.nodes!r}: a job needs at least 1 node. Fix: --nodes 1, or the number of "
                "machines to train on.",
            )
        if not isinstance(self.gpus_per_node, int) or self.gpus_per_node < 0:
            raise ConfigError(
                "gpus_per_node",
                f"--gpus-per-node {self.gpus_per_node!r}: use the number of GPUs each node gives the job "
                "(one training process each), or 0 to train on CPUs (--nproc processes a node).",
            )
        if not isinstance(self.nproc, int) or self.nproc < 1:
            raise ConfigError("nproc", f"--nproc {self.nproc!r}: at least 1 process a node. Fix: --nproc 1.")
        if self.time and not _TIME.match(self.time):
            raise ConfigError(
                "time",
                f"--time {self.time!r}: give the job's time limit as HH:MM:SS or D-HH:MM:SS (minutes and "
                "seconds below 60). Fix: e.g. --time 12:00:00 or --time 2-00:00:00.",
            )
        for flag, value in (("partition", self.partition), ("account", self.account)):
            if value and not _NAME.match(value):
                raise ConfigError(
                    flag,
                    f"--{flag} {value!r}: a SLURM {flag} name has letters, digits and . _ - , + only. "
                    f"Fix: the name `sinfo` (partitions) or `sacctmgr show assoc` (accounts) lists.",
                )
        for arg in self.sbatch_args:
            if not arg.startswith("-") or any(c in arg for c in "\n\r\0"):
                raise ConfigError(
                    "sbatch_arg",
                    f"--sbatch-arg {arg!r}: each is one sbatch option on one line, starting with '-'. "
                    "Fix: e.g. --sbatch-arg=--constraint=a100 --sbatch-arg=--mem=0.",
                )
        return self


def find_sbatch() -> str:
    """The ``sbatch`` on PATH; a ConfigError explaining what to do when there is none."""
    found = shutil.which("sbatch")
    if not found:
        raise ConfigError(
            "slurm",
            "--slurm: no `sbatch` on PATH, so the job cannot be submitted from this machine. Fix: run "
            "this on the cluster's login node (where `sbatch --version` works), or add --dry-run to "
            "print the script.",
        )
    return found


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def render(
    spec: SlurmSpec,
    *,
    run_dir: str | Path,
    run_id: str,
    name: str,
    python: str = sys.executable,
    project_dir: str | Path = PROJECT_DIR,
    env: Mapping[str, str] | None = None,
) -> str:
    """The batch script of run ``run_id`` (pure: the same inputs give the same text)."""
    lines = [
        "#!/bin/bash",
        f"# Neural Canvas pre-training run {run_id} ({name}), written by `canvas train --slurm`.",
        f"# Submit it again (it resumes from the last checkpoint): sbatch {_q(Path(run_dir) / SCRIPT)}",
        f"#SBATCH --job-name=canvas-{name}",
        f"#SBATCH --nodes={spec.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if spec.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={spec.gpus_per_node}")
    if spec.partition:
        lines.append(f"#SBATCH --partition={spec.partition}")
    if spec.account:
        lines.append(f"#SBATCH --account={spec.account}")
    if spec.time:
        lines.append(f"#SBATCH --time={spec.time}")
        lines.append("#SBATCH --signal=TERM@120")
    lines += [
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={Path(run_dir) / 'engine.log'}",
        *(f"#SBATCH {arg}" for arg in spec.sbatch_args),
        "",
        "set -euo pipefail",
        *(f"export {key}={_q(value)}" for key, value in sorted((env or {}).items())),
        f"export CANVAS_RUN_DIR={_q(run_dir)}",
        f"cd {_q(project_dir)}",
        "# The rendezvous: a port on the allocation's first node, different for each job.",
        'RDZV_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        "RDZV_PORT=$((20000 + SLURM_JOB_ID % 20000))",
        'echo "=== canvas: SLURM job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on '
        '$SLURM_JOB_NODELIST at $(date -u +%Y-%m-%dT%H:%M:%SZ)"',
        "# One torchrun a node; --resume-auto continues from the last checkpoint after a requeue.",
        f"srun --nodes={spec.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 --label \\",
        f"  {_q(python)} -m torch.distributed.run \\",
        f"    --nnodes={spec.nodes} --nproc-per-node={spec.procs_per_node} \\",
        f'    --rdzv-backend=c10d --rdzv-endpoint="$RDZV_HOST:$RDZV_PORT" --rdzv-id={_q(run_id)} \\',
        '    -m engine.train.worker --run-dir "$CANVAS_RUN_DIR" --resume-auto',
        "",
    ]
    return "\n".join(lines)


def script_env() -> dict[str, str]:
    """The store and cache locations of this shell, fixed in the script so a requeue (or a
    resubmission from another shell) finds the same run store."""
    from engine.locations import CACHE_ENV, HOME_ENV

    return {k: os.environ[k] for k in (HOME_ENV, CACHE_ENV) if os.environ.get(k, "").strip()}


def submit(script: Path, sbatch: str) -> str:
    """``sbatch --parsable SCRIPT``; the job id (``JOBID`` or ``JOBID;CLUSTER``: the id part)."""
    from engine.runs.store import RunStoreError

    try:
        out = subprocess.run(
            [sbatch, "--parsable", str(script)],
            capture_output=True,
            text=True,
            timeout=SUBMIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunStoreError(f"could not run {sbatch}: {exc}") from None
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    job = lines[-1].split(";")[0] if lines else ""
    if out.returncode != 0 or not re.fullmatch(r"\d+(_\d+)?", job):
        said = (out.stderr.strip() or out.stdout.strip() or "no output")[-800:]
        raise RunStoreError(f"sbatch refused the job (exit status {out.returncode}): {said}")
    return job


def start_slurm_run(
    cfg: TrainConfig, name: str | None, spec: SlurmSpec, *, dry_run: bool = False
) -> tuple[RunDir | None, str, str | None]:
    """Create the run, write its script and submit it; ``(run, script text, job id)``.

    ``cfg`` is a checked :class:`~engine.config.train.TrainConfig`. With ``dry_run`` nothing is
    created and nothing submitted: the script is rendered for a placeholder run directory. The
    flags and ``sbatch`` are checked before anything is created; when ``sbatch`` refuses, the new
    run directory is removed again and RunStoreError says why.
    """
    from engine.locations import runs_dir
    from engine.runs import create_run
    from engine.runs.meta import RunKind
    from engine.runs.store import atomic_path

    spec.check()
    if dry_run:
        placeholder = runs_dir() / "RUN-ID"
        text = render(
            spec, run_dir=placeholder, run_id="RUN-ID", name=name or "pretrain-RUN-ID", env=script_env()
        )
        return None, text, None
    sbatch = find_sbatch()
    run = create_run(RunKind.PRETRAIN, name, cfg.to_dict(), extra={"nproc": spec.procs_per_node})
    try:
        meta = run.read_meta()
        text = render(spec, run_dir=run.path, run_id=run.id, name=meta.name, env=script_env())
        path = run.path / SCRIPT
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        os.chmod(path, 0o700)
        job = submit(path, sbatch)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    run.update_meta(slurm_job_id=job, message=f"submitted as SLURM job {job}")
    return run, text, job


def describe(spec: SlurmSpec) -> str:
    """One line for the terminal: what was asked of SLURM."""
    n = spec.procs_per_node
    what = ("GPU" if spec.gpus_per_node else "process") + (
        "" if n == 1 else ("s" if spec.gpus_per_node else "es")
    )
    parts: Sequence[str] = [
        f"{spec.nodes} node{'s' if spec.nodes != 1 else ''}",
        f"{n} {what} each",
        *([f"partition {spec.partition}"] if spec.partition else []),
        *([f"time {spec.time}"] if spec.time else []),
    ]
    return ", ".join(parts)


def resubmit(run: RunDir) -> str:
    """``canvas resume`` of a SLURM run: submit its batch script again; returns the new job id.

    The script always runs the worker with ``--resume-auto``, so the new job continues from the
    last checkpoint on the compute nodes; running the engine on this (login) node instead would
    be wrong. Refused, like any resume, for a run that is live or finished.
    """
    from engine.runs.control import check_restartable, restarting_meta
    from engine.runs.status import run_status
    from engine.runs.store import RunStoreError

    script = run.path / SCRIPT
    with run.locked():  # two consoles resuming at once submit one job
        status = run_status(run, tail=0)
        check_restartable(run, status)
        if not script.is_file() or script.is_symlink():
            raise RunStoreError(
                f"run {run.id} is a SLURM run but its batch script {script} is missing; submit it "
                "again with `canvas train --slurm` (a new run) or restore the script."
            )
        try:
            sbatch = find_sbatch()
        except ConfigError as exc:
            raise RunStoreError(str(exc).replace("--slurm: ", "")) from None
        job = submit(script, sbatch)
        meta = restarting_meta(run, status, slurm_job_id=job, message=f"resubmitted as SLURM job {job}")
        run.write_meta(meta)  # under the lock already held (update_meta would take it again)
    return job
