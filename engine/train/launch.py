"""Creating a pre-training run directory and launching its engine detached. Torch-free.

Front ends do not call this directly: :func:`engine.train.preflight.start` checks the config first
(so bad input never leaves a run directory behind) and then calls :func:`start_training_run`. The
run's whole config is stored in ``run.json`` before the engine starts, so the engine, a later
``canvas resume`` and a person reading the run directory all see the same settings.

Several nodes (:class:`Nodes`): every node runs ``torchrun`` with the same ``--nnodes``, c10d
rendezvous endpoint and rendezvous id (by default the run id). Node 0 creates the run directory on
the shared file system (:func:`start_training_run`); node ``R > 0`` joins it
(:func:`join_training_run`), launching its own ``torchrun`` with output to ``engine.log.nodeR`` and
never touching ``run.json``. Global rank 0 (torchrun's c10d rendezvous places it, normally on the
node whose agent registered first) alone writes the run directory, as on one node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine.config.errors import ConfigError
from engine.config.train import TrainConfig
from engine.runs import create_run, launch_detached
from engine.runs.meta import RunKind
from engine.runs.process import python_argv, spawn_detached
from engine.runs.session import RUN_DIR_ENV
from engine.runs.store import RunDir, RunStoreError, now_iso, open_nofollow

WORKER = "engine.train.worker"
#: ``HOST:PORT`` (a host name, an IPv4 address, or ``[IPv6]``).
_ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*):(\d{1,5})$")


@dataclass(frozen=True)
class Nodes:
    """Where this node stands in a multi-node job: ``torchrun``'s ``--nnodes``, ``--node-rank``,
    ``--rdzv-endpoint`` and ``--rdzv-id`` (c10d rendezvous; an empty id means the run id)."""

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""
    rdzv_id: str = ""

    def check(self) -> Nodes:
        """Refuse impossible values, naming the flag and the fix (before anything is created)."""
        if isinstance(self.nnodes, bool) or not isinstance(self.nnodes, int) or self.nnodes < 1:
            raise ConfigError(
                "nnodes",
                f"--nnodes {self.nnodes!r}: the number of nodes must be a whole number of at least 1. "
                "Fix: --nnodes 1 (this machine only) or the number of machines taking part.",
            )
        if not isinstance(self.node_rank, int) or not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(
                "node_rank",
                f"--node-rank {self.node_rank!r} with --nnodes {self.nnodes}: a node rank runs from 0 to "
                f"{self.nnodes - 1}. Fix: give node 0 to the machine that creates the run and 1, 2, … "
                "to the others.",
            )
        if self.nnodes > 1 or self.rdzv_endpoint:
            match = _ENDPOINT.match(self.rdzv_endpoint or "")
            if not match or not 1 <= int(match.group(2)) <= 65535:
                raise ConfigError(
                    "rdzv_endpoint",
                    f"--rdzv-endpoint {self.rdzv_endpoint!r}: several nodes meet at HOST:PORT, a port "
                    "of node 0 that every node can reach. Fix: e.g. --rdzv-endpoint node0.cluster:29500 "
                    "(the same on every node).",
                )
        if self.rdzv_id and not re.fullmatch(r"[A-Za-z0-9._\-]{1,128}", self.rdzv_id):
            raise ConfigError(
                "rdzv_id",
                f"--rdzv-id {self.rdzv_id!r}: use letters, digits, '.', '_' or '-' (at most 128). "
                "Fix: leave it out to use the run id.",
            )
        return self

    @property
    def multi(self) -> bool:
        return self.nnodes > 1

    def torchrun_args(self, run_id: str, nproc: int) -> list[str]:
        """The ``torchrun`` options of this node (c10d rendezvous, no restarts: resume is ours)."""
        return [
            f"--nnodes={self.nnodes}",
            f"--node-rank={self.node_rank}",
            f"--nproc-per-node={nproc}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={self.rdzv_endpoint}",
            f"--rdzv-id={self.rdzv_id or run_id}",
        ]


def node_log_name(node_rank: int) -> str:
    """The log of node ``R``'s ``torchrun`` in the run directory (node 0's is ``engine.log``)."""
    return "engine.log" if node_rank == 0 else f"engine.log.node{node_rank}"


def worker_argv(
    run_dir: str,
    resume: bool | str = False,
    nproc: int = 1,
    nodes: Nodes | None = None,
    run_id: str = "",
) -> list[str]:
    """The engine command line; with ``nproc > 1`` it runs under ``torchrun`` (DDP), with several
    ``nodes`` under a c10d rendezvous. ``resume="auto"`` resumes when the run has a checkpoint."""
    flag = ["--resume-auto"] if resume == "auto" else ["--resume"] if resume else []
    args = ["--run-dir", run_dir, *flag]
    if nodes is not None and nodes.multi:
        return python_argv("torch.distributed.run", *nodes.torchrun_args(run_id, nproc), "-m", WORKER, *args)
    if nproc > 1:
        return python_argv(
            "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", WORKER, *args
        )
    return python_argv(WORKER, *args)


def create_training_run(
    cfg: TrainConfig, name: str | None = None, nproc: int = 1, nodes: Nodes | None = None
) -> RunDir:
    """The run directory with the whole config and the resume command (no checks beyond the config's).

    A multi-node run's resume command is node 0's (``--resume``); the other nodes rejoin with
    ``canvas train --run RUN --node-rank R …``, which resumes whenever a checkpoint exists."""
    cfg.validate()
    if nodes is not None and nodes.multi:
        nodes = nodes.check()
        run = create_run(RunKind.PRETRAIN, name, cfg.to_dict(), extra={"nproc": nproc})
        resume = worker_argv("{run_dir}", True, nproc, nodes, run.id)
        run.update_meta(resume_argv=resume)
        return run
    return create_run(
        RunKind.PRETRAIN,
        name,
        cfg.to_dict(),
        resume_argv=worker_argv("{run_dir}", resume=True, nproc=nproc),
        extra={"nproc": nproc},
    )


def start_training_run(
    cfg: TrainConfig,
    name: str | None = None,
    *,
    nproc: int = 1,
    env: Mapping[str, str] | None = None,
    nodes: Nodes | None = None,
) -> RunDir:
    """Create the run directory and launch its engine detached; returns at once.

    ``cfg`` must have passed :func:`engine.train.preflight.preflight`; use
    :func:`engine.train.preflight.start`, which does both."""
    run = create_training_run(cfg, name, nproc, nodes)
    launch_detached(run, worker_argv(str(run.path), nproc=nproc, nodes=nodes, run_id=run.id), env=env)
    return run


def join_training_run(
    run: RunDir, nodes: Nodes, *, nproc: int = 1, env: Mapping[str, str] | None = None
) -> int:
    """Node ``R > 0`` of a multi-node run: launch this node's ``torchrun`` detached, its output to
    ``engine.log.nodeR``; run.json is left to global rank 0. Returns the pid.

    The engine resumes when the run has a checkpoint (global rank 0 decides for every rank), so the
    same command rejoins a run that node 0 resumed."""
    nodes.check()
    if not nodes.multi or nodes.node_rank == 0:
        raise ConfigError(
            "node_rank",
            "--run joins a multi-node run from node 1, 2, …: it needs --nnodes N (N > 1) and "
            "--node-rank R (R > 0). Fix: node 0 starts the run without --run.",
        )
    if run.read_meta().kind != RunKind.PRETRAIN:
        raise RunStoreError(f"run {run.id} is not a pre-training run; only those train on several nodes.")
    run.check_real()
    argv = worker_argv(str(run.path), "auto", nproc, nodes, run.id)
    log = run.path / node_log_name(nodes.node_rank)
    header = f"=== canvas: node {nodes.node_rank} at {now_iso()}: {' '.join(argv)}\n"
    fd = open_nofollow(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600, "node log")
    try:  # the header, as launch_detached writes one; never through a planted link
        os.write(fd, header.encode("utf-8"))
    finally:
        os.close(fd)
    try:
        proc = spawn_detached(argv, log, env={RUN_DIR_ENV: str(run.path), **(env or {})})
    except OSError as exc:
        raise RunStoreError(f"could not start node {nodes.node_rank} of run {run.id}: {exc}") from exc
    return proc.pid
