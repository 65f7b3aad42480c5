"""The inference worker process: ``python -m engine.serve.worker``.

It speaks :mod:`engine.serve.protocol` over stdin/stdout. A reader thread reads requests (so a
``cancel`` is seen while a generation runs); one worker thread loads and generates, one request
at a time, in the order they came; every reply goes through one writer under a lock, flushed
line by line. stderr is the log (the client points it at a file).

It dies with its parent, whatever the parent's death: stdin reaching EOF, ``PR_SET_PDEATHSIG``
(Linux: SIGTERM the moment the parent exits, even by ``kill -9``), and a ``getppid()`` poll as the
fallback elsewhere. SIGINT is ignored: a Ctrl-C in the terminal reaches the whole process group,
and the client decides what it means (usually: cancel the generation).
"""

from __future__ import annotations

import gc
import json
import os
import queue
import signal
import sys
import threading
import traceback
from typing import Any, BinaryIO

from engine.serve import protocol
from engine.serve.protocol import ProtocolError

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make sure this process does not outlive ``parent`` (see the module docstring)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(0)

    def watch() -> None:
        import time

        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Worker:
    """Requests in, replies out; see the module docstring."""

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.write_lock = threading.Lock()
        self.jobs: queue.Queue[protocol.Request | None] = queue.Queue()
        self.cancels: dict[str, threading.Event] = {}  # generate id -> its cancel flag (queued or running)
        self.cancels_lock = threading.Lock()
        self._session: Any = None

    # ---------------------------------------------------------------------------------- output
    def send(self, reply: protocol.Reply) -> None:
        line = protocol.encode(reply)
        with self.write_lock:
            try:
                self.stdout.write(line)
                self.stdout.flush()
            except (BrokenPipeError, ValueError, OSError):  # the client is gone
                os._exit(0)

    def error(self, request_id: str | None, exc: ProtocolError) -> None:
        self.send(protocol.Error(request_id, message=exc.message, field=exc.field))

    # ---------------------------------------------------------------------------------- reading
    def read_loop(self) -> None:
        for raw in iter(self.stdin.readline, b""):
            if not raw.strip():
                continue
            try:
                request = protocol.decode_request(raw)
            except ProtocolError as exc:
                self.error(_loose_id(raw), exc)
                continue
            if isinstance(request, protocol.Cancel):
                with self.cancels_lock:
                    flag = self.cancels.get(request.target)
                if flag is not None:
                    flag.set()
                continue  # answered by the target's done; an unknown or finished target: nothing to do
            if isinstance(request, protocol.Shutdown):
                with self.cancels_lock:
                    for flag in self.cancels.values():
                        flag.set()
                self.jobs.put(request)
                return
            if isinstance(request, protocol.Generate):
                with self.cancels_lock:
                    self.cancels[request.id] = threading.Event()
            self.jobs.put(request)
        # EOF: the parent closed our stdin or died; stop what runs and leave.
        with self.cancels_lock:
            for flag in self.cancels.values():
                flag.set()
        self.jobs.put(None)

    # ---------------------------------------------------------------------------------- serving
    @property
    def session(self) -> Any:
        if self._session is None:
            from engine.serve.session import InferenceSession  # imports torch: after the first request

            gc.freeze()  # torch's ~10^6 objects: no later collection walks them again (see main)
            self._session = InferenceSession()
        return self._session

    def serve(self) -> int:
        while True:
            request = self.jobs.get()
            if request is None:
                self._close()
                return 0
            if isinstance(request, protocol.Shutdown):
                self._close()
                self.send(protocol.Bye(request.id))
                return 0
            try:
                self.handle(request)
            except ProtocolError as exc:
                self.error(request.id, exc)
            except Exception as exc:  # keep serving: the request failed, not the worker
                traceback.print_exc(file=sys.stderr)
                sys.stderr.flush()
                self.send(
                    protocol.Error(
                        request.id,
                        message=f"{type(exc).__name__}: {exc}".strip()
                        + " (the worker's log has the traceback; it keeps serving)",
                    )
                )
            finally:
                with self.cancels_lock:
                    self.cancels.pop(request.id, None)
                if not gc.isenabled():  # the first request (the import and the load) is over
                    gc.enable()

    def handle(self, request: protocol.Request) -> None:
        if isinstance(request, protocol.Load):
            ready = self.session.load(request, self.send)
            print(f"loaded {ready.model} ({ready.kind}) on {ready.device}", file=sys.stderr, flush=True)
            self.send(ready)
        elif isinstance(request, protocol.Generate):
            with self.cancels_lock:
                flag = self.cancels.setdefault(request.id, threading.Event())
            if flag.is_set():  # cancelled while it waited its turn
                self.send(protocol.Done(request.id, finish_reason="cancelled"))
                return
            self.send(self.session.generate(request, self.send, flag))
        elif isinstance(request, protocol.Render):
            self.send(self.session.render(request))

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()


def _loose_id(raw: bytes) -> str | None:
    """The ``id`` of a line that is not a valid request, when it has a usable one."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    value = record.get("id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def main() -> int:
    # No cyclic garbage collection until the first request is served: importing torch and loading
    # a model allocate about a million long-lived objects, and the full collections they trigger
    # (about 0.1 s during the import and 0.1-0.3 s during the load, measured on a CPU) are time a
    # chat waits for its first token, spent proving that nothing is garbage. Frozen after the
    # import (Worker.session), those objects are never walked again.
    gc.disable()
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    stdout = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the protocol stream
    worker = Worker(sys.stdin.buffer, stdout)
    threading.Thread(target=worker.read_loop, name="requests", daemon=True).start()
    code = worker.serve()
    sys.stderr.flush()
    os._exit(code)  # daemon threads blocked on stdin must not hold the exit


if __name__ == "__main__":
    sys.exit(main())
