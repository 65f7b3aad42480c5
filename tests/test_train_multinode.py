"""Two "nodes" on this machine: two ``torchrun`` launches with ``--nnodes 2`` meeting at a c10d
rendezvous on 127.0.0.1 (gloo) train like one process with the same global batch, and a kill -9 of
the whole job followed by a resume (node 0: ``canvas resume``; node 1: the same join command)
gives the uninterrupted losses."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from engine.runs.store import RunDir, resolve_run
from tests.helpers import wait_until
from tests.lifecycle_helpers import canvas, events, finish

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_cache")]

SETS = [
    *("--set", "max_steps=30", "--set", "seq_len=32", "--set", "log_every=1"),
    *("--set", "eval_every=1000", "--set", "checkpoint_every=5", "--set", "keep_checkpoints=10"),
    *("--set", "precision=fp32", "--set", "model.n_layers=2", "--set", "model.dim=64"),
    *("--set", "model.n_heads=4", "--set", "model.n_kv_heads=2", "--set", "sample_every=0"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run: RunDir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in events(run, "metric")}


def job_processes(run: RunDir) -> list:
    """Every process of the job (both torchrun agents and their workers), found by the run's path."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if str(run.path) in cmdline and any(
            "torch.distributed.run" in a or "engine.train.worker" in a for a in cmdline
        ):
            found.append(proc)
    return found


def test_two_nodes_match_one_process_and_resume_exactly_after_kill_9():
    start = time.monotonic()
    one = canvas("train", *SETS, "--set", "micro_batch=4", "--name", "one", "--detach")
    assert one.returncode == 0, one.stderr
    reference = resolve_run(one.stdout.split()[0])

    port = free_port()
    nodes = ["--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    node0 = canvas(
        "train", *SETS, "--set", "micro_batch=2", "--name", "two", *nodes, "--node-rank", "0", "--detach"
    )
    assert node0.returncode == 0, node0.stderr
    run = resolve_run(node0.stdout.split()[0])
    node1 = canvas("train", "--run", "two", *nodes, "--node-rank", "1", "--detach")
    assert node1.returncode == 0, node1.stderr
    assert node1.stdout.split()[0] == run.id

    # kill -9 the whole job (both nodes) once a checkpoint exists and it trained past it. (This
    # comes before waiting for the reference: both train at once, and the job must not finish
    # while the test waits on the other run.)
    wait_until(
        lambda: any(c["step"] >= 5 for c in events(run, "checkpoint")), what="a checkpoint", interval=0.01
    )
    procs = job_processes(run)
    assert len(procs) == 4  # 2 agents + 2 workers
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    assert finish(reference).state == "finished"
    expected = losses(reference)
    assert sorted(expected) == list(range(1, 31))
    crashed = finish(run)
    assert crashed.state == "crashed", crashed
    before = losses(run)
    killed_at = max(before)
    assert killed_at < 30, "the job finished before it was killed"
    assert before == pytest.approx({s: expected[s] for s in before}, rel=1e-4)  # 2 nodes = 1 process

    port = free_port()  # a fresh rendezvous endpoint: the killed store's port may linger
    run.update_meta(
        resume_argv=[a.replace(nodes[3], f"127.0.0.1:{port}") for a in run.read_meta().resume_argv or []]
    )
    nodes[3] = f"127.0.0.1:{port}"
    out = canvas("resume", run.id)
    assert out.returncode == 0, out.stderr
    rejoin = canvas("train", "--run", run.id, *nodes, "--node-rank", "1", "--detach")
    assert rejoin.returncode == 0, rejoin.stderr
    assert finish(run).state == "finished"
    resumed = [r for r in events(run, "run_info")][-1]["resumed_from"]
    assert 5 <= resumed <= killed_at
    assert losses(run) == pytest.approx(expected, rel=1e-4)
    # Node 1 wrote only its own log; the events are one writer's (each step once per attempt).
    assert (run.path / "engine.log.node1").read_text().count("=== canvas: node 1") == 2
    steps = [r["step"] for r in events(run, "metric")]
    assert steps == list(range(1, killed_at + 1)) + list(range(resumed + 1, 31))
    print(f"multi-node test: {time.monotonic() - start:.1f} s")
