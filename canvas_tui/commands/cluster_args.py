"""``canvas train``'s flags beyond one machine: multi-node ``torchrun`` and SLURM. Torch-free.

Multi-node (c10d rendezvous through ``torchrun``; ``--nproc`` stays the processes per node)::

    node 0:  canvas train … --name big --nnodes 2 --node-rank 0 --rdzv-endpoint node0:29500
    node 1:  canvas train --run big --nnodes 2 --node-rank 1 --rdzv-endpoint node0:29500

Node 0 creates the run directory on the shared file system; node ``R > 0`` joins it with ``--run``
(its id, id prefix or name; waited for up to :data:`JOIN_WAIT_S` seconds) and takes its config
from ``run.json``, so it accepts no config flags. The rendezvous id defaults to the run id.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from canvas_tui.cli import CliError
from engine.config.errors import ConfigError

#: How long node R > 0 waits for node 0 to create the run it joins.
JOIN_WAIT_S = 60.0


def register(p: argparse.ArgumentParser) -> None:
    """Add the multi-node and SLURM flags to ``canvas train``."""
    g = p.add_argument_group("several nodes (torchrun, c10d rendezvous)")
    g.add_argument("--nnodes", type=int, default=1, metavar="N", help="machines taking part (default 1)")
    g.add_argument(
        "--node-rank",
        type=int,
        default=0,
        metavar="R",
        help="this machine's rank, 0 … N-1 (node 0 creates the run)",
    )
    g.add_argument(
        "--rdzv-endpoint", default="", metavar="HOST:PORT", help="where the nodes meet: a port on node 0"
    )
    g.add_argument("--rdzv-id", default="", metavar="ID", help="rendezvous id (default: the run id)")
    g.add_argument(
        "--run",
        metavar="RUN",
        help="node R > 0: join this run (id, id prefix or name) that node 0 created; its config is used",
    )
    s = p.add_argument_group("SLURM (writes <run>/slurm.sbatch and submits it with sbatch)")
    s.add_argument("--slurm", action="store_true", help="run as a SLURM batch job (with --dry-run: print it)")
    s.add_argument("--nodes", type=int, default=1, metavar="N", help="SLURM: nodes (default 1)")
    s.add_argument(
        "--gpus-per-node",
        type=int,
        default=0,
        metavar="G",
        help="SLURM: GPUs a node, one process each (0: CPU)",
    )
    s.add_argument("--partition", default="", metavar="P", help="SLURM: partition")
    s.add_argument("--time", default="", metavar="HH:MM:SS", help="SLURM: time limit (also D-HH:MM:SS)")
    s.add_argument("--account", default="", metavar="A", help="SLURM: account to charge")
    s.add_argument(
        "--sbatch-arg",
        dest="sbatch_args",
        action="append",
        default=[],
        metavar="ARG",
        help="SLURM: one more #SBATCH option, e.g. --sbatch-arg=--constraint=a100; repeatable",
    )


def nodes_from(args: argparse.Namespace) -> Any:
    """The checked :class:`engine.train.launch.Nodes` of a multi-node launch, or None for one node."""
    from engine.train.launch import Nodes

    nodes = Nodes(args.nnodes, args.node_rank, args.rdzv_endpoint, args.rdzv_id).check()
    if not nodes.multi:
        return None
    if nodes.node_rank > 0 and not args.run:
        raise ConfigError(
            "node_rank",
            f"--node-rank {nodes.node_rank}: node R > 0 joins the run node 0 created. Fix: add "
            "--run RUN (the id node 0 printed, or the --name it was given).",
        )
    return nodes


SLURM_ONLY = {
    "nodes": "--nodes",
    "gpus_per_node": "--gpus-per-node",
    "partition": "--partition",
    "time": "--time",
    "account": "--account",
    "sbatch_args": "--sbatch-arg",
}


def slurm_spec(args: argparse.Namespace) -> Any:
    """The checked :class:`engine.cluster.sbatch.SlurmSpec` of ``--slurm``, or None without it; the
    SLURM flags without ``--slurm``, or with the manual multi-node flags, are refused."""
    from engine.cluster.sbatch import SlurmSpec

    defaults = {"nodes": 1, "gpus_per_node": 0, "partition": "", "time": "", "account": "", "sbatch_args": []}
    if not args.slurm:
        given = [flag for f, flag in SLURM_ONLY.items() if getattr(args, f) != defaults[f]]
        if given:
            raise ConfigError(
                "slurm",
                f"{', '.join(given)}: SLURM job settings, without --slurm. Fix: add --slurm, or drop them.",
            )
        return None
    if args.nnodes != 1 or args.node_rank or args.rdzv_endpoint or args.rdzv_id or args.run:
        raise ConfigError(
            "slurm",
            "--slurm places the nodes itself: give --nodes N (and --gpus-per-node G), not --nnodes, "
            "--node-rank, --rdzv-endpoint, --rdzv-id or --run.",
        )
    spec = SlurmSpec(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        partition=args.partition,
        time=args.time,
        account=args.account,
        sbatch_args=tuple(args.sbatch_args),
        nproc=args.nproc,
    )
    return spec.check()


def submit_slurm(args: argparse.Namespace, cfg: Any, spec: Any) -> int:
    """``--slurm``: check the config (not this machine's GPUs: the job runs elsewhere), then write the
    script and submit it, or with ``--dry-run`` print it and create nothing."""
    from engine.cluster.sbatch import describe, find_sbatch, start_slurm_run
    from engine.runs.store import RunStoreError
    from engine.train import preflight

    if not args.dry_run:
        find_sbatch()  # before the data check, which may read for a while
    cfg = preflight.check_config(cfg).check_sample_prompts()
    preflight.check_data(cfg)
    try:
        run, text, job = start_slurm_run(cfg, args.name, spec, dry_run=args.dry_run)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    if run is None:
        sys.stdout.write(text)
        return 0
    print(run.id, flush=True)
    print(
        f"submitted run {run.id} as SLURM job {job} ({describe(spec)}); script {run.path / 'slurm.sbatch'}. "
        f"`canvas status {run.id}` follows the job, `canvas stop {run.id}` stops it.",
        file=sys.stderr,
        flush=True,
    )
    return 0


CONFIG_FLAGS = ("preset", "config", "data", "sets", "name")


def join(args: argparse.Namespace, nodes: Any, follow: Any) -> int:
    """Node R > 0: launch this node's share of the run named by ``--run``, then follow it (or not)."""
    from engine.runs.store import RunStoreError, resolve_run
    from engine.train.launch import join_training_run, node_log_name

    if nodes is None or nodes.node_rank == 0:
        raise ConfigError(
            "run",
            "--run joins a multi-node run from node 1, 2, …. Fix: add --nnodes N --node-rank R "
            "--rdzv-endpoint HOST:PORT (R > 0), or drop --run to start a new run.",
        )
    given = [f"--{f.replace('sets', 'set')}" for f in CONFIG_FLAGS if getattr(args, f, None)]
    if given:
        raise ConfigError(
            "run",
            f"--run takes the run's config from its run.json; {', '.join(given)} would be ignored. "
            "Fix: give those to node 0 only.",
        )
    deadline = time.monotonic() + JOIN_WAIT_S
    waited = False
    while True:
        try:
            run = resolve_run(args.run)
            break
        except RunStoreError as exc:
            if time.monotonic() >= deadline:
                raise CliError(f"{exc} (waited {JOIN_WAIT_S:.0f} s for node 0 to create it)") from None
            if not waited:
                print(f"canvas: waiting for run {args.run!r} (node 0 creates it)…", file=sys.stderr)
                waited = True
            time.sleep(0.5)
    try:
        join_training_run(run, nodes, nproc=args.nproc)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    print(run.id, flush=True)
    log = run.path / node_log_name(nodes.node_rank)
    print(
        f"node {nodes.node_rank} of {nodes.nnodes} joined run {run.id}; its output goes to {log}.",
        file=sys.stderr,
        flush=True,
    )
    if args.detach:
        return 0
    return follow(run)
