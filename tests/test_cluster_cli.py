"""``canvas train`` beyond one machine, without a cluster: the SLURM batch script against golden
files, its submission against a stand-in ``sbatch`` on PATH (tests/slurm_standins.py), and every
multi-node and SLURM flag refused before a run exists. (Two real nodes: test_train_multinode.py.)

Regenerate the golden scripts after an intended change with ``CANVAS_UPDATE_GOLDEN=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from canvas_tui.cli import main
from engine.cluster.sbatch import SlurmSpec, render
from engine.locations import runs_dir
from engine.runs.store import list_runs, resolve_run
from tests import slurm_standins

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
RUN_ID = "20261201-020304-5a6b7c8d"
FIXED = {
    "run_dir": f"/shared/canvas/runs/{RUN_ID}",
    "run_id": RUN_ID,
    "name": "big",
    "python": "/opt/canvas/.venv/bin/python",
    "project_dir": "/opt/canvas",
    "env": {"CANVAS_HOME": "/shared/canvas"},
}
CASES = {
    "slurm_two_nodes.sbatch": SlurmSpec(
        nodes=2,
        gpus_per_node=8,
        partition="gpu",
        time="1-12:00:00",
        account="lab42",
        sbatch_args=("--constraint=h100", "--mem=0"),
    ),
    "slurm_cpu_one_node.sbatch": SlurmSpec(nodes=1, nproc=2),
}
SMALL = ["--set", "max_steps=5", "--set", "seq_len=32"]


@pytest.mark.parametrize("golden", sorted(CASES))
def test_the_batch_script_matches_its_golden_file(golden: str):
    text = render(CASES[golden], **FIXED)  # type: ignore[arg-type]
    path = GOLDEN / golden
    if os.environ.get("CANVAS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0  # valid bash


def canvas(*args: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PATH": path},
        timeout=120,
    )


def test_slurm_writes_the_script_submits_it_and_records_the_job(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    slurm_standins.sbatch(bin_dir, job_id="4242")
    out = canvas(
        "train",
        *SMALL,
        "--name",
        "big",
        "--slurm",
        "--nodes",
        "2",
        "--gpus-per-node",
        "4",
        "--time",
        "01:30:00",
        "--sbatch-arg=--constraint=h100",
        path=slurm_standins.path_with(bin_dir),
    )
    assert out.returncode == 0, out.stderr
    run = resolve_run(out.stdout.split()[0])
    meta = run.read_meta()
    assert meta.slurm_job_id == "4242" and meta.name == "big" and meta.status == "created"
    assert meta.config["max_steps"] == 5 and meta.nproc == 4
    script = run.path / "slurm.sbatch"
    assert slurm_standins.calls(bin_dir, "sbatch") == [["--parsable", str(script)]]
    spec = SlurmSpec(nodes=2, gpus_per_node=4, time="01:30:00", sbatch_args=("--constraint=h100",))
    expected = render(
        spec,
        run_dir=run.path,
        run_id=run.id,
        name="big",
        python=sys.executable,
        project_dir=REPO,
        env={"CANVAS_HOME": os.environ["CANVAS_HOME"]},
    )
    assert script.read_text() == expected
    assert "SLURM job 4242 (2 nodes, 4 GPUs each, time 01:30:00)" in out.stderr
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]  # no temporaries left


def test_sbatch_refusing_the_job_leaves_no_run(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    slurm_standins.install(
        bin_dir, "sbatch", stderr="sbatch: error: invalid partition specified: nope\n", exit_code=1
    )
    out = canvas("train", *SMALL, "--slurm", "--partition", "nope", path=slurm_standins.path_with(bin_dir))
    assert out.returncode == 2
    assert (
        "sbatch refused the job (exit status 1): sbatch: error: invalid partition specified: nope"
        in out.stderr
    )
    assert len(slurm_standins.calls(bin_dir, "sbatch")) == 1
    assert list_runs() == []


def test_dry_run_prints_the_script_and_creates_nothing(capsys: pytest.CaptureFixture[str]):
    # No sbatch is needed to look at the script.
    assert main(["train", *SMALL, "--slurm", "--nodes", "3", "--gpus-per-node", "2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "#SBATCH --nodes=3\n#SBATCH --ntasks-per-node=1\n#SBATCH --gpus-per-node=2\n" in text
    assert "--nnodes=3 --nproc-per-node=2" in text and "--resume-auto" in text
    assert text.startswith("#!/bin/bash\n") and not runs_dir().exists()


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = main(["train", *SMALL, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert not runs_dir().exists() or list_runs() == []
    return err.removeprefix("canvas: error: ")


def test_bad_cluster_flags_are_refused_before_a_run_exists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    assert refused(capsys, "--slurm", "--time", "90", "--dry-run").startswith(
        "--time '90': give the job's time"
    )
    assert refused(capsys, "--slurm", "--time", "1:75:00", "--dry-run").startswith("--time '1:75:00'")
    assert refused(capsys, "--slurm", "--nodes", "0", "--dry-run").startswith(
        "--nodes 0: a job needs at least 1"
    )
    assert "--partition 'a b'" in refused(capsys, "--slurm", "--partition", "a b", "--dry-run")
    assert "--sbatch-arg 'mem=0'" in refused(capsys, "--slurm", "--sbatch-arg", "mem=0", "--dry-run")
    assert refused(capsys, "--nodes", "2").startswith("--nodes: SLURM job settings, without --slurm")
    assert "not --nnodes" in refused(capsys, "--slurm", "--nnodes", "2", "--dry-run")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    assert refused(capsys, "--slurm").startswith("--slurm: no `sbatch` on PATH")
    # The multi-node flags of a manual launch.
    assert refused(capsys, "--nnodes", "2").startswith("--rdzv-endpoint '': several nodes meet at HOST:PORT")
    assert "--rdzv-endpoint 'node0'" in refused(capsys, "--nnodes", "2", "--rdzv-endpoint", "node0")
    nodes = ["--nnodes", "2", "--rdzv-endpoint", "node0:29500"]
    assert refused(capsys, *nodes, "--node-rank", "2").startswith("--node-rank 2 with --nnodes 2")
    assert "add --run RUN" in refused(capsys, *nodes, "--node-rank", "1")
    assert "--set would be ignored" in refused(capsys, *nodes, "--node-rank", "1", "--run", "x")


def free_port_in(low: int, high: int) -> int:
    import random
    import socket

    for port in random.sample(range(low, high), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}..{high}")


@pytest.mark.slow  # two tiny training runs through the generated script (~25 s on 2 loaded cores)
@pytest.mark.usefixtures("shared_cache")
def test_the_submitted_script_trains_and_a_requeue_resumes_from_the_last_checkpoint(tmp_path: Path):
    """The script itself, run by bash with stand-ins for ``srun`` (runs the command here) and
    ``scontrol`` (the allocation is 127.0.0.1): it trains, and run again (a requeue) it resumes."""
    bin_dir = tmp_path / "bin"
    slurm_standins.sbatch(bin_dir, job_id="77")
    slurm_standins.scontrol(bin_dir, ["127.0.0.1"])
    slurm_standins.srun_here(bin_dir)
    path = slurm_standins.path_with(bin_dir)
    sets = ["--set", "max_steps=4", "--set", "seq_len=32", "--set", "micro_batch=2", "--set", "log_every=1"]
    sets += ["--set", "checkpoint_every=2", "--set", "eval_every=1000", "--set", "model.n_layers=1"]
    out = canvas("train", *sets, "--slurm", "--nproc", "1", path=path)
    assert out.returncode == 0, out.stderr
    run = resolve_run(out.stdout.split()[0])
    job = str(free_port_in(20000, 40000) - 20000)  # the script's rendezvous port is 20000 + job id

    def sbatch_runs_it() -> None:
        env = {**os.environ, "PATH": path, "SLURM_JOB_ID": job, "SLURM_JOB_NODELIST": "node[1]"}
        with open(run.log_path, "a") as log:  # as #SBATCH --output would
            done = subprocess.run(
                ["bash", str(run.path / "slurm.sbatch")], env=env, stdout=log, stderr=log, timeout=240
            )
        assert done.returncode == 0, run.log_path.read_text()[-3000:]

    sbatch_runs_it()
    from tests.lifecycle_helpers import events

    assert run.read_meta().status == "finished"
    assert [m["step"] for m in events(run, "metric")] == [1, 2, 3, 4]
    # Requeued with more to do (as after a preemption): the same script resumes from step 4.
    run.update_meta(config={**run.read_meta().config, "max_steps": 6})
    sbatch_runs_it()
    assert events(run, "run_info")[-1]["resumed_from"] == 4
    assert [m["step"] for m in events(run, "metric")] == [1, 2, 3, 4, 5, 6]
    assert run.read_meta().status == "finished"
    srun = slurm_standins.calls(bin_dir, "srun")
    assert len(srun) == 2 and srun[0][:4] == [
        "--nodes=1",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--label",
    ]
    assert f"--rdzv-endpoint=127.0.0.1:{int(job) + 20000}" in srun[0]
    assert "=== canvas: SLURM job " + job in run.log_path.read_text()


def test_resume_of_a_slurm_run_submits_its_script_again_and_starts_nothing_here(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    slurm_standins.sbatch(bin_dir, job_id="4242")
    slurm_standins.cluster(bin_dir)
    path = slurm_standins.path_with(bin_dir)
    out = canvas("train", *SMALL, "--name", "requeued", "--slurm", path=path)
    assert out.returncode == 0, out.stderr
    run = resolve_run("requeued")
    # The job hit its time limit before the engine could record anything: the run is over.
    slurm_standins.set_job(bin_dir, "4242", squeue=None, sacct="TIMEOUT", exit="0:15")
    slurm_standins.sbatch(bin_dir, job_id="4243")
    resumed = canvas("resume", "requeued", path=path)
    assert resumed.returncode == 0, resumed.stderr
    assert "SLURM job 4243" in resumed.stdout
    script = str(run.path / "slurm.sbatch")
    assert slurm_standins.calls(bin_dir, "sbatch")[-1] == ["--parsable", script]
    meta = run.read_meta()
    assert meta.slurm_job_id == "4243" and meta.status == "starting" and meta.pid is None
    assert meta.resumed_from in ("crashed", "stopped", "failed")
    # While the new job is live, a second resume is refused and submits nothing.
    slurm_standins.set_job(bin_dir, "4243", squeue="PENDING", sacct="PENDING")
    again = canvas("resume", "requeued", path=path)
    assert again.returncode == 2 and "nothing to resume" in again.stderr
    assert len(slurm_standins.calls(bin_dir, "sbatch")) == 2
