"""The client side of the inference worker: start one, talk to it from any thread. Torch-free.

``WorkerClient.spawn()`` starts ``python -m engine.serve.worker`` with pipes; a reader thread
reads its replies and routes each to the call waiting for that request id. A worker that dies
turns every waiting call into a :class:`WorkerError` carrying the end of its log.

::

    client = WorkerClient.spawn(log_path=run_dir / "chat-worker.log")
    ready = client.load("my-run", on_progress=print)
    stream = client.generate(prompt="Once upon a time", max_new_tokens=50, temperature=0)
    for delta in stream:
        print(delta.text, end="", flush=True)
    print(stream.done.tokens_per_s)
    client.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from engine.serve import protocol

_REPO = Path(__file__).resolve().parents[2]


class WorkerError(Exception):
    """A request the worker refused (``field`` names the field) or a worker that died (``field`` None)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class _Dead:
    """Put on every waiting queue when the worker's stdout ends."""

    def __init__(self, message: str) -> None:
        self.message = message


def _error(reply: protocol.Error | _Dead) -> WorkerError:
    if isinstance(reply, _Dead):
        return WorkerError(reply.message)
    return WorkerError(reply.message, reply.field)


class GenerationStream:
    """The replies of one generate request: iterate for its deltas; ``done`` once it ended."""

    def __init__(self, client: WorkerClient, request_id: str, replies: queue.Queue) -> None:
        self.id = request_id
        self._client = client
        self._replies = replies
        self._done: protocol.Done | None = None
        self._failure: WorkerError | None = None
        self._ended = threading.Event()
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[protocol.Delta]:
        while not self._ended.is_set():
            reply = self._replies.get()
            if isinstance(reply, protocol.Delta):
                yield reply
            elif isinstance(reply, protocol.Done):
                self._finish(done=reply)
            elif isinstance(reply, (protocol.Error, _Dead)):
                self._finish(failure=_error(reply))

    def _finish(self, done: protocol.Done | None = None, failure: WorkerError | None = None) -> None:
        self._done, self._failure = done, failure
        self._ended.set()
        self._client._forget(self.id)

    def cancel(self) -> None:
        """Ask the worker to stop this generation; the stream ends with finish_reason "cancelled"."""
        if not self._ended.is_set():
            self._client._send_quietly(protocol.Cancel(self._client._next_id(), target=self.id))

    def wait(self, timeout: float | None = None) -> protocol.Done:
        """Drain the stream (discarding deltas) and return its Done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WorkerError(f"generate {self.id} did not finish within {timeout:g} s.")
            try:
                reply = self._replies.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(reply, protocol.Done):
                self._finish(done=reply)
            elif isinstance(reply, (protocol.Error, _Dead)):
                self._finish(failure=_error(reply))
        return self.done  # type: ignore[return-value]

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def done(self) -> protocol.Done | None:
        """The final reply once iteration ended (None before); raises WorkerError if the request failed."""
        if self._failure is not None:
            raise self._failure
        return self._done


class WorkerClient:
    """One inference worker process; see the module docstring. Thread-safe."""

    def __init__(self, process: subprocess.Popen, log_path: Path | None = None) -> None:
        self.process = process
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._waiting: dict[str, queue.Queue] = {}
        self._waiting_lock = threading.Lock()
        self._eof = threading.Event()
        self.orphan_errors: list[protocol.Error] = []  # errors about lines that had no usable id
        self._reader = threading.Thread(target=self._read, name="worker-replies", daemon=True)
        self._reader.start()

    @classmethod
    def spawn(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        python: str | None = None,
    ) -> WorkerClient:
        """Start a worker (``python -m engine.serve.worker``); stderr goes to ``log_path``."""
        full_env = dict(os.environ if env is None else env)
        path = full_env.get("PYTHONPATH", "")
        full_env["PYTHONPATH"] = str(_REPO) + (os.pathsep + path if path else "")
        full_env.setdefault("TOKENIZERS_PARALLELISM", "false")
        full_env.setdefault(
            "HF_HUB_OFFLINE", "1"
        )  # load only what is on disk: a chat never waits on the network
        full_env["PYTHONUNBUFFERED"] = "1"
        log: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            process = subprocess.Popen(
                [python or sys.executable, "-m", "engine.serve.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=full_env,
                cwd=str(_REPO),
            )
        finally:
            if not isinstance(log, int):
                log.close()
        return cls(process, Path(log_path) if log_path is not None else None)

    # ---------------------------------------------------------------------------------- plumbing
    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self._eof.is_set()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _next_id(self) -> str:
        with self._id_lock:
            return str(next(self._ids))

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None:
            return ""
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _death(self) -> str:
        code = self.process.poll()
        tail = self.log_tail()
        how = f"exited with status {code}" if code is not None else "closed its output"
        return f"the inference worker (pid {self.process.pid}) {how}." + (
            f" The end of its log ({self.log_path}):\n{tail}" if tail else ""
        )

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            reply = protocol.decode_reply(raw)
            if reply is None:
                continue
            with self._waiting_lock:
                box = self._waiting.get(reply.id) if reply.id is not None else None
            if box is not None:
                box.put(reply)
            elif isinstance(reply, protocol.Error):
                self.orphan_errors.append(reply)
        self._eof.set()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        dead = _Dead(self._death())
        with self._waiting_lock:
            boxes = list(self._waiting.values())
        for box in boxes:
            box.put(dead)

    def _register(self, request_id: str) -> queue.Queue:
        box: queue.Queue = queue.Queue()
        with self._waiting_lock:
            self._waiting[request_id] = box
        return box

    def _forget(self, request_id: str) -> None:
        with self._waiting_lock:
            self._waiting.pop(request_id, None)

    def _send(self, request: protocol.Request) -> None:
        if self._eof.is_set() or self.process.poll() is not None:
            raise WorkerError(self._death())
        try:
            with self._write_lock:
                assert self.process.stdin is not None
                self.process.stdin.write(protocol.encode(request))
                self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise WorkerError(self._death()) from None

    def _send_quietly(self, request: protocol.Request) -> None:
        with contextlib.suppress(WorkerError):
            self._send(request)

    def send_raw(self, line: bytes) -> None:
        """Write one raw line (for tests of malformed requests)."""
        with self._write_lock:
            assert self.process.stdin is not None
            self.process.stdin.write(line if line.endswith(b"\n") else line + b"\n")
            self.process.stdin.flush()

    def _request(self, cls: type[protocol.Request], fields: dict[str, Any]) -> tuple[str, queue.Queue]:
        request_id = self._next_id()
        try:
            request = cls(id=request_id, **fields)
        except TypeError as exc:
            names = [f.name for f in dataclasses.fields(cls) if f.name != "id"]
            raise WorkerError(f"{cls.OP}: {exc}; its fields are {', '.join(names)}.", None) from None
        if getattr(request, "messages", None) is not None:
            request.messages = [  # type: ignore[attr-defined]
                m if isinstance(m, protocol.Message) else protocol.Message(m["role"], m["content"])
                for m in request.messages  # type: ignore[attr-defined]
            ]
        box = self._register(request_id)
        try:
            self._send(request)
        except WorkerError:
            self._forget(request_id)
            raise
        return request_id, box

    def _one(self, box: queue.Queue, request_id: str, deadline: float | None, what: str):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return box.get(timeout=left)
        except queue.Empty:
            self._forget(request_id)
            raise WorkerError(f"the worker did not answer {what} in time.") from None

    # ---------------------------------------------------------------------------------- requests
    def load(
        self,
        model: str,
        *,
        checkpoint: str | None = None,
        adapter: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        on_progress: Callable[[protocol.Progress], None] | None = None,
        timeout: float | None = None,
    ) -> protocol.Ready:
        """Load ``model``; Progress replies go to ``on_progress``; WorkerError when refused."""
        fields = dict(model=model, checkpoint=checkpoint, adapter=adapter, device=device, dtype=dtype)
        request_id, box = self._request(protocol.Load, fields)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                reply = self._one(box, request_id, deadline, "load")
                if isinstance(reply, protocol.Progress):
                    if on_progress is not None:
                        on_progress(reply)
                elif isinstance(reply, protocol.Ready):
                    return reply
                elif isinstance(reply, (protocol.Error, _Dead)):
                    raise _error(reply)
        finally:
            self._forget(request_id)

    def generate(self, **fields: Any) -> GenerationStream:
        """Start a generation (fields of protocol.Generate except ``id``); iterate the stream."""
        request_id, box = self._request(protocol.Generate, fields)
        return GenerationStream(self, request_id, box)

    def render(self, *, timeout: float | None = None, **fields: Any) -> protocol.Rendered:
        request_id, box = self._request(protocol.Render, fields)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                reply = self._one(box, request_id, deadline, "render")
                if isinstance(reply, protocol.Rendered):
                    return reply
                if isinstance(reply, (protocol.Error, _Dead)):
                    raise _error(reply)
        finally:
            self._forget(request_id)

    def close(self, timeout: float = 5.0) -> None:
        """Shut the worker down (bye), then terminate / kill it if it does not go."""
        if self.process.poll() is None:
            request_id = self._next_id()
            box = self._register(request_id)
            try:
                self._send(protocol.Shutdown(request_id))
                box.get(timeout=timeout)
            except (WorkerError, queue.Empty):
                pass
            finally:
                self._forget(request_id)
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
