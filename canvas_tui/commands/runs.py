"""``canvas runs | status | logs | stop | checkpoint | resume | rm``: the run store from a shell.

Everything here reads run directories (:mod:`engine.runs`) and never imports torch, so these
commands answer in a fraction of a second even on a login node without a GPU. A run is named by
its id, a unique start of its id, or its name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from canvas_tui.cli import CliError
from canvas_tui.fmt import fmt_age
from engine import locations
from engine.runs import control
from engine.runs.events import Carbon, Event, Gpu, RunInfo, System, UnknownEvent, decode_any
from engine.runs.format import fmt_num, fmt_rate, fmt_step, format_line, skipped_note
from engine.runs.meta import RunKind
from engine.runs.notes import read_notes
from engine.runs.reader import EventReader, LineTail, line_offset_near_end
from engine.runs.status import RunStatus, run_status, summarize
from engine.runs.store import RunDir, RunStoreError, list_runs, resolve_run
from engine.train.layout import checkpoint_damage, list_checkpoints

#: Telemetry types hidden from ``canvas logs`` unless ``--telemetry`` is given.
TELEMETRY_TYPES = (Gpu, System, Carbon)
FOLLOW_POLL_S = 0.2


def register(sub: argparse._SubParsersAction) -> None:
    ref_help = "run id, unique start of an id, or run name"

    p = sub.add_parser(
        "runs",
        help="list runs with their true status and latest numbers",
        description="List the runs in the run store, newest first: id, name, kind, "
        "status (checked against the process table), step/total, last loss, tokens/s "
        "and age; TAGS once a run has tags (e on the console's runs list edits them).",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "status",
        help="show one run's status, and the end of its log if it crashed",
        description="Show a run's true status: running (process alive with the "
        "recorded start time), finished, stopped, failed (with the error) or crashed "
        "(process gone without a final status; the end of engine.log is shown).",
    )
    p.add_argument("run", help=ref_help)
    p.add_argument(
        "-n",
        "--lines",
        type=int,
        default=20,
        help="log lines to show for a crashed or failed run (default 20)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "logs",
        help="show a run's events and engine log; -f follows until it ends",
        description="Print a run's recent events (formatted) and engine.log lines. "
        "With -f, keep printing new ones as they arrive, like tail -f, and exit when "
        "the run ends: status 0 if it finished or was stopped, 1 if it failed or "
        "crashed. Interrupting -f leaves the run running.",
    )
    p.add_argument("run", help=ref_help)
    p.add_argument("-f", "--follow", action="store_true", help="follow until the run ends")
    p.add_argument(
        "-n",
        "--lines",
        type=int,
        default=20,
        help="how many recent events and log lines to show first (default 20)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--events", action="store_true", help="only events, not engine.log")
    which.add_argument("--log", action="store_true", help="only engine.log, not events")
    p.add_argument("--telemetry", action="store_true", help="also show gpu/system/carbon samples")
    p.add_argument("--raw", action="store_true", help="print events as their JSON lines")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser(
        "stop",
        help="stop a run gracefully (it checkpoints, then exits)",
        description="Send SIGTERM to a running engine (and leave a control/stop file): "
        "it finishes the current step, writes a checkpoint and exits with status "
        "stopped. Resume it later with `canvas resume`.",
    )
    p.add_argument("run", help=ref_help)
    p.add_argument("--wait", action="store_true", help="wait until the run has exited")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds --wait waits; for a SLURM run, seconds before it falls back to scancel (default 120)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="end it now without a checkpoint: SIGKILL here, scancel for a SLURM job "
        "(it resumes from its last checkpoint)",
    )
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser(
        "checkpoint",
        help="ask a running run to write a checkpoint now and go on",
        description="Send SIGUSR1 to a running engine (and leave a control/checkpoint "
        "file): it writes a checkpoint at the next step boundary and continues.",
    )
    p.add_argument("run", help=ref_help)
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser(
        "resume",
        help="continue a stopped or crashed run from its last checkpoint",
        description="Start the run's recorded resume command, detached: it continues "
        "from the last checkpoint in the run's checkpoints/ directory. Refused for "
        "running or finished runs and runs without a checkpoint.",
    )
    p.add_argument("run", help=ref_help)
    p.add_argument("-f", "--follow", action="store_true", help="then follow it like `canvas logs -f`")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "rm",
        help="delete runs (refuses running ones unless --force)",
        description="Delete run directories with their checkpoints and logs. A running "
        "run is refused; --force stops it gracefully first (killing it if it does not "
        "exit within --timeout seconds), then deletes it.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help=ref_help)
    p.add_argument("--force", action="store_true", help="stop running runs first, then delete them")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds --force waits for a graceful stop before killing (default 30)",
    )
    p.set_defaults(func=cmd_rm)


def _resolve(ref: str) -> RunDir:
    try:
        return resolve_run(ref)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None


# -- formatting: the one formatter of engine.runs.format (also used by `canvas train` and the
# console's log pane) ----------------------------------------------------------------------------


def _shown(event: Event, args: argparse.Namespace) -> bool:
    """Whether ``canvas logs`` prints this event: known types, telemetry only with --telemetry."""
    if isinstance(event, UnknownEvent):
        # a newer engine's type: only its raw line means anything; a known type under a newer
        # schema is shown as such ("written by a newer Neural Canvas"), never misread
        return bool(args.raw) or event.newer
    return args.telemetry or not isinstance(event, TELEMETRY_TYPES)


# -- commands ---------------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace) -> int:
    rows = [summarize(run) for run in reversed(list_runs())]
    notes = {r.id: read_notes(r.path) for r in rows}  # people's notes and tags (notes.json)
    if args.json:
        print(json.dumps([{**r.as_dict(), **notes[r.id].as_dict()} for r in rows], indent=2))
        return 0
    if not rows:
        print(f"No runs in {locations.runs_dir()}.")
        return 0
    header: tuple[str, ...] = ("ID", "NAME", "KIND", "STATUS", "STEP", "LOSS", "TOK/S", "AGE")
    table: list[tuple[str, ...]] = [header] + [
        (
            r.id,
            r.name,
            r.kind,
            r.status + ("?" if not r.verified else ""),
            fmt_step(r.step, r.total_steps),
            fmt_num(r.loss),
            fmt_rate(r.tokens_per_s),
            fmt_age(r.age_s),
        )
        for r in rows
    ]
    if any(n.tags for n in notes.values()):  # a TAGS column once a run has tags
        table = [(*table[0], "TAGS")] + [
            (*line, " ".join(notes[r.id].tags)) for line, r in zip(table[1:], rows, strict=True)
        ]
        header = table[0]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    right = {4, 5, 6, 7}
    for row in table:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    if any(not r.verified for r in rows):
        print("? recorded on another host; its process cannot be checked from here.")
    return 0


def _status_dict(run: RunDir, status: RunStatus) -> dict[str, Any]:
    summary = summarize(run).as_dict()
    meta = run.read_meta()
    latest = run.latest_checkpoint()
    damaged = [
        {"path": str(path), "problem": problem}
        for _, path in list_checkpoints(run.checkpoints_dir)
        if (problem := checkpoint_damage(path, quick=True)) is not None
    ]
    return {
        **summary,
        "status": status.state,
        "message": status.message,
        "alive": status.alive,
        "verified": status.verified,
        "remote": status.remote,
        "responsive": status.responsive,
        "heartbeat_age_s": status.heartbeat_age_s,
        "slurm_job": status.slurm_job,
        "slurm_state": status.slurm_state,
        "log_tail": status.log_tail,
        "started": meta.started,
        "ended": meta.ended,
        "attempts": meta.attempts,
        "last_checkpoint": str(latest) if latest else None,
        "damaged_checkpoints": damaged,
        "resumable": bool(meta.resume_argv)
        and latest is not None
        and status.state in ("stopped", "crashed", "failed"),
        "config": meta.config,
    }


def _process_row(status: RunStatus, host: str | None) -> str:
    """Where the engine is and the evidence: the process table here, the heartbeat elsewhere."""
    slurm = f", SLURM job {status.slurm_job} {status.slurm_state or ''}".rstrip() if status.slurm_job else ""
    if not status.pid:
        return f"none (host {host}){slurm}"
    if status.remote:
        beat = (
            f"heartbeat {status.heartbeat_age_s:.0f} s ago"
            if status.heartbeat_age_s is not None
            else "no heartbeat; not checked from here"
        )
        return f"pid {status.pid} on {host} ({beat}){slurm}"
    return f"pid {status.pid} on {host}, " + ("alive" if status.alive else "exited") + slurm


def cmd_status(args: argparse.Namespace) -> int:
    run = _resolve(args.run)
    status = run_status(run, tail=max(0, args.lines))
    info = _status_dict(run, status)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    state = status.state + ("" if status.verified else " (unverified: recorded on another host)")
    if status.message.startswith(status.state):  # "unresponsive since …" says its state itself
        state = ""
    rows = [
        ("run", f"{info['id']}  ({info['name']}, {info['kind']})"),
        ("status", state + (f": {status.message}" if status.message and state else status.message)),
        ("process", _process_row(status, info["host"])),
        (
            "progress",
            f"step {fmt_step(info['step'], info['total_steps'])}, loss {fmt_num(info['loss'])}, "
            f"{fmt_rate(info['tokens_per_s'])} tok/s",
        ),
        ("created", f"{info['created']} ({fmt_age(info['age_s'])} ago)"),
        ("started", info["started"] or "-"),
        ("ended", info["ended"] or "-"),
        ("checkpoint", info["last_checkpoint"] or "none yet"),
        ("directory", info["path"]),
    ]
    meta = run.read_meta()
    if meta.kind == RunKind.FINETUNE:  # what it trains on, and what it produced
        rows.insert(-2, ("base", meta.base or (info.get("config") or {}).get("base") or "-"))
        if meta.adapter_bytes:
            size = meta.adapter_bytes / 2**20
            where = run.path / (meta.adapter or "adapter")
            rows.insert(-2, ("adapter", f"{where} ({size:.1f} MiB, from {meta.adapter_from})"))
    if meta.kind == RunKind.SERVE:  # where it answers, instead of training progress
        if not status.is_live:
            address = f"{meta.url} (no longer listening)" if meta.url else "-"
        else:
            address = meta.url or "not listening yet (loading the model)"
        rows[3] = ("address", address)
    if meta.kind == RunKind.EVAL:  # what it scored, and where the numbers are
        results = run.path / "results.json"
        rows[3] = ("results", str(results) if results.is_file() else "not yet (written at the end)")
        rows[-2] = ("models", ", ".join(str(m) for m in (info.get("config") or {}).get("models", [])) or "-")
    for bad in info["damaged_checkpoints"]:  # a resume skips these for the newest intact one
        rows.insert(-1, ("damaged", f"checkpoint {os.path.basename(bad['path'])} DAMAGED: {bad['problem']}"))
    for label, value in rows:
        print(f"{label:<11} {value}")
    if status.log_tail:
        print(f"\nLast {len(status.log_tail)} lines of engine.log:")
        for line in status.log_tail:
            print(f"  {line}")
    if info["resumable"]:
        print(f"\nContinue it from its last checkpoint with `canvas resume {run.id}`.")
    return 0


def _read(events: EventReader, args: argparse.Namespace) -> list[tuple[dict[str, Any], Event]]:
    """The new lines that ``canvas logs`` shows, each as its record (for --raw) and typed event."""
    pairs = [(record, decode_any(record)) for record in events.read_new()]
    return [(record, event) for record, event in pairs if _shown(event, args)]


def _print_events(pairs: list[tuple[dict[str, Any], Event]], args: argparse.Namespace, total: Any) -> None:
    for record, event in pairs:
        print(json.dumps(record) if args.raw else format_line(event, total))


def _print_log(lines: list[bytes]) -> None:
    for line in lines:
        print("| " + line.decode("utf-8", errors="replace").rstrip("\r"))


def follow_run(run: RunDir, args: argparse.Namespace, *, history: bool = True) -> int:
    """Print recent events and log lines, then (with ``args.follow``) new ones until the run ends.

    Lines of events.jsonl that are not events are skipped and reported once, on stderr, at the end.
    """
    n = max(0, args.lines)
    events = EventReader(run.events_path, line_offset_near_end(run.events_path, 4 << 20 if n else 0))
    try:
        return _follow(run, args, events, history=history)
    finally:  # however it ends (Ctrl-C included): one note for every line that was not an event
        note = skipped_note(events.skipped)
        if note:
            print(note, file=sys.stderr, flush=True)


def _follow(run: RunDir, args: argparse.Namespace, events: EventReader, *, history: bool) -> int:
    show_events, show_log = not args.log, not args.events
    n = max(0, args.lines)
    log = LineTail(run.log_path, line_offset_near_end(run.log_path, 256 << 10 if n else 0))
    total = run.read_meta().total_steps
    first_events, first_log = _read(events, args), log.read_lines()
    if history:
        if show_events:
            _print_events(first_events[-n:] if n else [], args, total)
        if show_log:
            _print_log(first_log[-n:] if n else [])
    if not args.follow:
        return 0
    status = run_status(run, tail=0)
    while True:
        ended = not status.is_live  # decided *before* the last read, so nothing written is missed
        new_events, new_log = _read(events, args), log.read_lines()
        if show_events:
            infos = [e.total_steps for _, e in new_events if isinstance(e, RunInfo)]
            total = total or next(iter(infos), None)
            _print_events(new_events, args, total)
        if show_log:
            _print_log(new_log)
        sys.stdout.flush()
        if ended:
            break
        time.sleep(FOLLOW_POLL_S)
        status = run_status(run, tail=0)
    if show_log:
        partial = log.read_partial()
        if partial.strip():
            _print_log([partial])
    message = f": {status.message}" if status.message else ""
    print(f"--- run {run.id} {status.state}{message}")
    return 0 if status.state in ("finished", "stopped") else 1


def cmd_logs(args: argparse.Namespace) -> int:
    # A run that already ended is not an error for -f: its history is shown with how it ended.
    return follow_run(_resolve(args.run), args)


def cmd_stop(args: argparse.Namespace) -> int:
    run = _resolve(args.run)
    try:
        before = run_status(run, tail=0)
        if before.is_live and before.slurm_job and not args.force and before.state != "queued":
            print(
                f"Asked run {run.id} (SLURM job {before.slurm_job}) to stop through its control file; "
                f"waiting up to {args.timeout:g} s for its checkpoint before `scancel`.",
                flush=True,
            )
        status = control.stop_run(
            run,
            wait=args.wait,
            timeout=args.timeout,
            force=args.force,
            cancel_after=args.timeout if before.slurm_job else None,
        )
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    if args.force or before.slurm_job:
        print(f"Run {run.id} {status.state}" + (f": {status.message}" if status.message else "") + ".")
        return 0 if not status.is_live else 1
    if not before.responsive:
        pid = before.pid
        go_on = (
            f"`kill -CONT {pid}` on {before.host} lets it go on"
            if before.remote
            else f"`kill -CONT {pid}` lets it go on if it was stopped"
        )
        force = "" if before.remote else f", or `canvas stop --force {run.id}` ends it now (no checkpoint)"
        print(
            f"Run {run.id} is not responding ({before.message}). The stop request waits for it: "
            f"it checkpoints and exits as soon as it runs again ({go_on}){force}."
        )
        return 0
    if args.wait:
        if status.is_live:
            raise CliError(
                f"run {run.id} is still {status.state} after {args.timeout:g} s; it may be in "
                f"a long step or checkpoint. Check with `canvas status {run.id}`."
            )
        print(f"Run {run.id} {status.state}" + (f": {status.message}" if status.message else "") + ".")
    elif run.read_meta().kind == "serve":
        print(f"Asked serve run {run.id} to stop: it ends the answers in flight and exits.")
    else:
        where = f" on host {before.host} through its control file" if before.remote else ""
        print(
            f"Asked run {run.id}{where} to stop: it finishes its step, checkpoints and exits. "
            f"Follow with `canvas logs {run.id} -f`; continue later with `canvas resume {run.id}`."
        )
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    run = _resolve(args.run)
    try:
        control.request_checkpoint(run)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    print(f"Asked run {run.id} to write a checkpoint at its next step boundary.")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run = _resolve(args.run)
    if run.read_meta().slurm_job_id:  # the job runs on the cluster's nodes, not on this one
        from engine.cluster.sbatch import resubmit

        try:
            job = resubmit(run)
        except RunStoreError as exc:
            raise CliError(str(exc)) from None
        print(
            f"Resubmitted run {run.id} as SLURM job {job}; it continues from its last checkpoint "
            f"when the job starts. Follow it with `canvas logs {run.id} -f`.",
            flush=True,
        )
        return 0
    try:
        pid = control.resume_run(run)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    print(f"Resumed run {run.id} from {run.latest_checkpoint()} (pid {pid}).", flush=True)
    if args.follow:
        follow_args = argparse.Namespace(
            follow=True, lines=0, events=False, log=False, telemetry=False, raw=False
        )
        return follow_run(run, follow_args, history=False)
    print(f"Follow it with `canvas logs {run.id} -f`.")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    runs = [_resolve(ref) for ref in args.runs]  # resolve all first: a typo deletes nothing
    for run in runs:  # and a run that is not a real directory in the store (a link) neither
        try:
            control.check_deletable(run)
        except RunStoreError as exc:
            raise CliError(str(exc)) from None
    for run in runs:
        try:
            control.delete_run(run, force=args.force, timeout=args.timeout)
        except RunStoreError as exc:
            raise CliError(str(exc)) from None
        print(f"Deleted run {run.id}.")
    return 0
