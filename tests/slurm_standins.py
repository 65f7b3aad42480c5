"""Stand-ins for SLURM's commands (``sbatch``, ``squeue``, ``sacct``, ``scancel``) on ``PATH``.

SLURM cannot run on the test machines. Each stand-in is a small executable that appends its
arguments (one JSON list a line) to ``<bin>/<name>.calls``, prints what the real command would
print for the case under test, and exits with the given status. Output formats follow SLURM's
documentation: ``sbatch --parsable`` prints ``JOBID`` (``JOBID;CLUSTER`` on a multi-cluster
set-up); errors go to stderr as ``sbatch: error: …``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path


def install(bin_dir: Path, name: str, stdout: str = "", stderr: str = "", exit_code: int = 0) -> Path:
    """Write the stand-in ``bin_dir/name``; returns its path. Put ``bin_dir`` first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    calls = bin_dir / f"{name}.calls"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(calls)!r}, 'a') as fh:\n"
        "    fh.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_code})\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(bin_dir: Path, name: str) -> list[list[str]]:
    """The argument lists the stand-in ``name`` was called with, in order."""
    path = bin_dir / f"{name}.calls"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def path_with(bin_dir: Path) -> str:
    """A PATH with ``bin_dir`` first (the stand-ins win over any real SLURM)."""
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def sbatch(bin_dir: Path, job_id: str = "4242") -> Path:
    """``sbatch`` accepting every job: ``--parsable`` output is the job id alone."""
    return install(bin_dir, "sbatch", stdout=f"{job_id}\n")


# -- a stateful stand-in cluster for status and stop (squeue, sacct, scancel over one jobs.json) --

_CLUSTER_TOOL = r'''#!{python}
"""Stand-in `{name}` over {jobs}: each job is {{"squeue": STATE or null, "reason": ..., "nodes": ...,
"sacct": STATE or null, "exit": "status:signal"}}; squeue knows only jobs with an "squeue" state."""
import json, os, sys
args = sys.argv[1:]
with open({calls!r}, "a") as fh:
    fh.write(json.dumps(args) + "\n")
with open({jobs!r}) as fh:
    jobs = json.load(fh)
def opt(long, short=None):
    for i, a in enumerate(args):
        if a.startswith(long + "="):
            return a.split("=", 1)[1]
        if a in (long, short) and i + 1 < len(args):
            return args[i + 1]
    return None
name = {name!r}
if name == "squeue":
    job = opt("--jobs", "-j")
    fmt = opt("--format", "-o") or "%i %T"
    info = jobs.get(job)
    if not info or not info.get("squeue"):
        sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
        sys.exit(1)
    line = fmt
    for key, value in (("%i", job), ("%T", info["squeue"]), ("%r", info.get("reason") or "None"),
                       ("%N", info.get("nodes") or "")):
        line = line.replace(key, value)
    print(line)
elif name == "sacct":
    job = opt("--jobs", "-j")
    info = jobs.get(job)
    if info and info.get("sacct"):
        fields = {{"JobID": job, "State": info["sacct"], "ExitCode": info.get("exit") or "0:0"}}
        print("|".join(fields[f] for f in (opt("--format", "-o") or "JobID,State,ExitCode").split(",")))
elif name == "scancel":
    job = args[-1] if args else ""
    info = jobs.get(job)
    if not info or not (info.get("squeue") or "").strip():
        sys.stderr.write(f"scancel: error: Kill job error on job id {{job}}: Invalid job id specified\n")
        sys.exit(1)
    jobs[job] = {{"squeue": None, "sacct": f"CANCELLED by {{os.getuid()}}", "exit": "0:15"}}
    with open({jobs!r}, "w") as fh:
        json.dump(jobs, fh)
'''


def cluster(bin_dir: Path, jobs: dict[str, dict] | None = None) -> Path:
    """Stand-in ``squeue``, ``sacct`` and ``scancel`` sharing one ``bin_dir/jobs.json`` (see
    :func:`set_job`): squeue answers ``--format`` with ``%i %T %r %N``, sacct ``--parsable2`` with
    ``JobID,State,ExitCode`` fields, scancel turns a queued or running job into ``CANCELLED by UID``
    (exit ``0:15``), as SLURM does. Returns ``bin_dir``; put it first on PATH (:func:`path_with`)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "jobs.json").write_text(json.dumps(jobs or {}))
    for name in ("squeue", "sacct", "scancel"):
        path = bin_dir / name
        path.write_text(
            _CLUSTER_TOOL.format(
                python=sys.executable,
                name=name,
                calls=str(bin_dir / f"{name}.calls"),
                jobs=str(bin_dir / "jobs.json"),
            )
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def set_job(
    bin_dir: Path,
    job: str,
    squeue: str | None = None,
    sacct: str | None = None,
    *,
    reason: str = "None",
    nodes: str = "",
    exit: str = "0:0",
) -> None:
    """Set what the stand-in cluster says of ``job``: ``squeue`` its live state (None: no longer in
    the queue), ``sacct`` its accounting state (``COMPLETED``, ``CANCELLED by 1000``…)."""
    path = bin_dir / "jobs.json"
    jobs = json.loads(path.read_text())
    jobs[job] = {"squeue": squeue, "reason": reason, "nodes": nodes, "sacct": sacct, "exit": exit}
    path.write_text(json.dumps(jobs))


def scontrol(bin_dir: Path, hosts: list[str]) -> Path:
    """``scontrol show hostnames LIST`` printing ``hosts``, one a line (what the real one prints)."""
    return install(bin_dir, "scontrol", stdout="".join(f"{h}\n" for h in hosts))


def srun_here(bin_dir: Path) -> Path:
    """``srun [OPTIONS] CMD…`` running ``CMD…`` once, on this machine (a one-node allocation): the
    options (all ``--x=y`` or ``--flag`` in our scripts) are recorded and dropped."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "srun"
    calls = bin_dir / "srun.calls"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        f"with open({str(calls)!r}, 'a') as fh:\n"
        "    fh.write(json.dumps(args) + '\\n')\n"
        "while args and args[0].startswith('-'):\n"
        "    args.pop(0)\n"
        "os.execvp(args[0], args)\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path
