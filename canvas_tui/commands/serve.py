"""``canvas serve``: an OpenAI-compatible HTTP server for one model, as a run of kind ``serve``.

The server is a detached engine process (``python -m engine.serve.http``) like every run: listed
by ``canvas runs``, followed by ``canvas logs``, stopped by ``canvas stop``. Without ``--detach``
this command stays in the foreground, prints the address once the model is loaded and a line per
request, and Ctrl-C stops the server (a second Ctrl-C leaves it running).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any

from canvas_tui.cli import CliError
from canvas_tui.commands.follow import log_tail_text, show_checked
from engine.runs.store import RunStoreError

POLL_S = 0.25
#: Environment variable read when --api-key is not given.
API_KEY_ENV = "CANVAS_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API (a `serve` run)",
        description="Serve MODEL (a run id, prefix or name, a model folder, or a cached Hub id) at "
        "/v1/models, /v1/completions and /v1/chat/completions, for the openai client, curl and chat "
        "UIs. Listens on 127.0.0.1 unless --host says otherwise; any other address needs --api-key.",
    )
    p.add_argument("model", metavar="MODEL", help="run id/prefix/name, model folder or Hub id")
    p.add_argument("--checkpoint", metavar="best|last|STEP", help="which checkpoint of a pre-training run")
    p.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder to put on a folder or Hub base")
    p.add_argument("--device", default="auto", help="auto (the GPU when free enough), cpu or cuda")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0: any free port)")
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"require `Authorization: Bearer KEY` (default: ${API_KEY_ENV} if set); needed off localhost",
    )
    p.add_argument("--model-name", metavar="ID", help="the model id clients send (default: from MODEL)")
    p.add_argument("--name", help="a name for the run (default: serve-<id suffix>)")
    p.add_argument("--detach", action="store_true", help="print the run id and return at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.serve import launch

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    cfg = launch.ServeConfig(
        model=args.model,
        checkpoint=args.checkpoint,
        adapter=args.adapter,
        device=args.device,
        dtype=args.dtype,
        host=args.host,
        port=args.port,
        model_name=args.model_name,
    )
    try:
        started = launch.start(cfg, args.name, api_key=api_key)
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    show_checked(started.checked)
    run_dir = started.run
    print(run_dir.id, flush=True)
    if args.detach:
        print(
            f"started serve run {run_dir.id} in the background: `canvas status {run_dir.id}` shows its "
            f"address once the model is loaded, `canvas stop {run_dir.id}` stops it.",
            file=sys.stderr,
        )
        return 0
    return follow(run_dir)


def follow(run_dir: Any) -> int:
    """Print the address once it listens and a line per request until the run ends.

    The first Ctrl-C stops the run (gracefully: the answers in flight end, the port is freed); a
    second one leaves it running in the background and returns."""
    from engine.runs import EventReader, run_status
    from engine.runs.control import stop_run
    from engine.runs.events import Log, Progress, Request
    from engine.runs.format import format_event

    interrupts = 0

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_interrupt)
    reader = EventReader(run_dir.events_path, 0)
    announced = stopping = False
    try:
        while True:
            if interrupts and not stopping:
                stopping = True
                print(
                    f"\nstopping serve run {run_dir.id} (Ctrl-C again to leave it running)…",
                    file=sys.stderr,
                    flush=True,
                )
                with contextlib.suppress(RunStoreError):  # it ended meanwhile
                    stop_run(run_dir)
            status = run_status(run_dir, tail=0)
            ended = not status.is_live
            for event in reader.read_events():
                if isinstance(event, Request):
                    print(format_event(event), flush=True)
                elif (isinstance(event, Log) and event.level in ("warning", "error")) or (
                    isinstance(event, Progress) and sys.stderr.isatty()
                ):
                    print(format_event(event), file=sys.stderr, flush=True)
            url = run_dir.read_meta().url
            if url and not announced and not ended:
                announced = True
                print(
                    f"serving at {url} (Ctrl-C stops it; `canvas stop {run_dir.id}` from elsewhere)",
                    flush=True,
                )
            if ended:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print(f"left serve run {run_dir.id} running: `canvas stop {run_dir.id}` stops it.", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    status = run_status(run_dir, tail=12)
    message = f": {status.message}" if status.message else ""
    print(f"serve run {run_dir.id} {status.state}{message}", flush=True)
    tail = log_tail_text(status)
    if tail:
        print(tail, file=sys.stderr)
    return 0 if status.state in ("finished", "stopped") else 1
