"""``canvas runs | status | logs | stop | checkpoint | resume | rm``: the run store from a shell.

Everything here reads run directories (:mod:`engine.runs`) and never imports torch, so these
commands answer in a fraction of a second even on a login node without a GPU. A run is named by
its id, a unique start of its id, or its name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any

from canvas_tui.cli import CliError
from canvas_tui.fmt import fmt_age
from engine import locations
from engine.runs import control
from engine.runs.reader import EventReader, LineTail, line_offset_near_end
from engine.runs.status import RunStatus, run_status, summarize
from engine.runs.store import RunDir, RunStoreError, list_runs, resolve_run

#: Telemetry types hidden from ``canvas logs`` unless ``--telemetry`` is given.
TELEMETRY_TYPES = ("gpu", "system", "carbon")
FOLLOW_POLL_S = 0.2


def register(sub: argparse._SubParsersAction) -> None:
    ref_help = "run id, unique start of an id, or run name"

    p = sub.add_parser(
        "runs",
        help="list runs with their true status and latest numbers",
        description="List the runs in the run store, newest first: id, name, kind, "
        "status (checked against the process table), step/total, last loss, tokens/s "
        "and age.",
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
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")
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


# -- formatting -------------------------------------------------------------------------------


def fmt_num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):  # "nan", "inf" as the writer spells non-finite floats
        return value
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.{digits}f}"
    return str(value)


def fmt_rate(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def fmt_step(step: Any, total: Any) -> str:
    if step is None:
        return "-" if total is None else f"0/{total}"
    return f"{step}/{total}" if total is not None else str(step)


def format_event(record: dict[str, Any], total_steps: Any = None) -> str | None:
    """One human line for an event, or None for types not shown (unknown ones included)."""
    kind = record.get("type")
    g = record.get
    if kind == "metric":
        parts = [f"step {fmt_step(g('step'), total_steps)}", f"loss {fmt_num(g('loss'))}"]
        if g("lr") is not None:
            parts.append(f"lr {g('lr'):.3g}" if isinstance(g("lr"), float) else f"lr {g('lr')}")
        if g("grad_norm") is not None:
            parts.append(f"grad {fmt_num(g('grad_norm'), 3)}")
        if g("tokens_per_s") is not None:
            parts.append(f"{fmt_rate(g('tokens_per_s'))} tok/s")
        if isinstance(g("step_time"), (int, float)):
            parts.append(f"{g('step_time'):.3f} s/step")
        text = "  ".join(parts)
    elif kind == "eval":
        text = (
            f"eval @ step {g('step')}  val_loss {fmt_num(g('val_loss'))}  ppl {fmt_num(g('perplexity'), 2)}"
        )
        for name, value in (g("metrics") or {}).items():
            text += f"  {name} {fmt_num(value)}"
    elif kind == "checkpoint":
        text = f"checkpoint ({g('kind')}) @ step {g('step')} -> {g('path')}"
    elif kind == "status":
        text = f"status: {g('state')}" + (f" ({g('message')})" if g("message") else "")
    elif kind == "log":
        text = f"[{g('level') or 'info'}] {g('message')}"
    elif kind == "run_info":
        bits = [
            f"{g('params'):,} params" if isinstance(g("params"), int) else None,
            g("precision"),
            f"on {g('device')}" if g("device") else None,
            f"{g('total_steps')} steps" if g("total_steps") is not None else None,
        ]
        text = "run: " + ", ".join(b for b in bits if b)
    elif kind == "progress":
        total = f"/{fmt_num(g('total'), 0)}" if g("total") is not None else ""
        eta = f", eta {fmt_age(g('eta'))}" if isinstance(g("eta"), (int, float)) else ""
        text = f"{g('phase')}: {fmt_num(g('done'), 0)}{total} {g('unit') or ''}{eta}".rstrip()
    elif kind in TELEMETRY_TYPES:
        fields = {k: v for k, v in record.items() if k not in ("v", "t", "type") and v is not None}
        text = f"{kind}: " + " ".join(f"{k}={fmt_num(v, 2)}" for k, v in fields.items())
    else:
        return None
    t = g("t")
    stamp = datetime.fromtimestamp(t).strftime("%H:%M:%S") if isinstance(t, (int, float)) else "--:--:--"
    return f"{stamp}  {text}"


# -- commands ---------------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace) -> int:
    rows = [summarize(run) for run in reversed(list_runs())]
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    if not rows:
        print(f"No runs in {locations.runs_dir()}.")
        return 0
    header = ("ID", "NAME", "KIND", "STATUS", "STEP", "LOSS", "TOK/S", "AGE")
    table = [header] + [
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
    return {
        **summary,
        "status": status.state,
        "message": status.message,
        "alive": status.alive,
        "verified": status.verified,
        "log_tail": status.log_tail,
        "started": meta.get("started"),
        "ended": meta.get("ended"),
        "attempts": meta.get("attempts"),
        "last_checkpoint": str(latest) if latest else None,
        "resumable": bool(meta.get("resume_argv"))
        and latest is not None
        and status.state in ("stopped", "crashed", "failed"),
        "config": meta.get("config"),
    }


def cmd_status(args: argparse.Namespace) -> int:
    run = _resolve(args.run)
    status = run_status(run, tail=max(0, args.lines))
    info = _status_dict(run, status)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    state = status.state + ("" if status.verified else " (unverified: recorded on another host)")
    rows = [
        ("run", f"{info['id']}  ({info['name']}, {info['kind']})"),
        ("status", state + (f": {status.message}" if status.message else "")),
        (
            "process",
            (f"pid {status.pid} on {info['host']}, " + ("alive" if status.alive else "exited"))
            if status.pid
            else f"none (host {info['host']})",
        ),
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
    if info["kind"] == "finetune":  # what it trains on, and what it produced
        rows.insert(-2, ("base", meta.get("base") or (info.get("config") or {}).get("base") or "-"))
        if meta.get("adapter_bytes"):
            size = meta["adapter_bytes"] / 2**20
            where = run.path / meta.get("adapter", "adapter")
            rows.insert(-2, ("adapter", f"{where} ({size:.1f} MiB, from {meta.get('adapter_from')})"))
    for label, value in rows:
        print(f"{label:<11} {value}")
    if status.log_tail:
        print(f"\nLast {len(status.log_tail)} lines of engine.log:")
        for line in status.log_tail:
            print(f"  {line}")
    if info["resumable"]:
        print(f"\nContinue it from its last checkpoint with `canvas resume {run.id}`.")
    return 0


def _print_events(records: list[dict[str, Any]], args: argparse.Namespace, total: Any) -> None:
    for record in records:
        if record.get("type") in TELEMETRY_TYPES and not args.telemetry:
            continue
        if args.raw:
            print(json.dumps(record))
            continue
        text = format_event(record, total)
        if text is not None:
            print(text)


def _print_log(lines: list[bytes]) -> None:
    for line in lines:
        print("| " + line.decode("utf-8", errors="replace").rstrip("\r"))


def follow_run(run: RunDir, args: argparse.Namespace, *, history: bool = True) -> int:
    """Print recent events and log lines, then (with ``args.follow``) new ones until the run ends."""
    show_events, show_log = not args.log, not args.events
    n = max(0, args.lines)
    events = EventReader(run.events_path, line_offset_near_end(run.events_path, 4 << 20 if n else 0))
    log = LineTail(run.log_path, line_offset_near_end(run.log_path, 256 << 10 if n else 0))
    total = run.read_meta().get("total_steps")
    first_events, first_log = events.read_new(), log.read_lines()
    if history:
        if show_events:
            shown = [r for r in first_events if args.telemetry or r.get("type") not in TELEMETRY_TYPES]
            if not args.raw:
                shown = [r for r in shown if format_event(r, total) is not None]
            _print_events(shown[-n:] if n else [], args, total)
        if show_log:
            _print_log(first_log[-n:] if n else [])
    if not args.follow:
        return 0
    status = run_status(run, tail=0)
    while True:
        ended = not status.is_live  # decided *before* the last read, so nothing written is missed
        new_events, new_log = events.read_new(), log.read_lines()
        if show_events:
            infos = [r.get("total_steps") for r in new_events if r.get("type") == "run_info"]
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
        status = control.stop_run(run, wait=args.wait, timeout=args.timeout)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    if args.wait:
        if status.is_live:
            raise CliError(
                f"run {run.id} is still {status.state} after {args.timeout:g} s; it may be in "
                f"a long step or checkpoint. Check with `canvas status {run.id}`."
            )
        print(f"Run {run.id} {status.state}" + (f": {status.message}" if status.message else "") + ".")
    else:
        print(
            f"Asked run {run.id} to stop: it finishes its step, checkpoints and exits. "
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
    for run in runs:
        try:
            control.delete_run(run, force=args.force, timeout=args.timeout)
        except RunStoreError as exc:
            raise CliError(str(exc)) from None
        print(f"Deleted run {run.id}.")
    return 0
