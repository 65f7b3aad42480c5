"""Check and start a ``serve`` run: the one path ``canvas serve`` takes. Torch-free.

A serve run is an engine process (``python -m engine.serve.http --run-dir DIR``) that loads one
model in process and answers OpenAI-style HTTP requests until ``canvas stop``. Like every run kind
it has a torch-free :func:`preflight` (the checks that need no model) and a :func:`start` that
preflights, then creates the run directory, then launches the detached engine, so a refused serve
leaves nothing behind.

What :func:`preflight` refuses, each with a :class:`~engine.config.errors.ConfigError` naming the
flag and the fix:

- a non-local bind (anything but a loopback address or ``localhost``) without an API key: such a
  server answers anyone who can reach the port, and a model server is an easy way to burn a GPU;
- a port that is already in use (checked by binding it, as the engine will, so the error comes
  before minutes of model loading), naming the serve run that holds it when it is one of ours;
- a host that does not resolve, a port outside 0..65535, a device this machine does not have.

The API key is never written to the run directory: it reaches the engine in its environment
(:data:`API_KEY_ENV`), which the engine removes from its own environment at once.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.config.errors import ConfigError
from engine.preflight import Started, check_device
from engine.runs.meta import RunKind
from engine.runs.process import python_argv
from engine.runs.store import RunDir

#: The engine module a serve run runs.
ENGINE = "engine.serve.http"

#: Environment variable that carries the API key to the engine (never stored in run.json).
API_KEY_ENV = "CANVAS_SERVE_API_KEY"

#: Shorter keys on a non-local bind get a warning (they are guessable).
MIN_KEY_CHARS = 16

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ServeConfig:
    """What a serve run loads and where it listens; stored in run.json's ``config``.

    ``model``: a run (id, prefix or name), a model folder or a Hub id, as ``canvas generate``
    takes it. ``port = 0`` lets the engine pick a free port (run.json's ``url`` then says which).
    ``api_key``: whether requests must carry one (the key itself is not stored).
    ``model_name``: the id clients send as ``model`` (default: derived from ``model``)."""

    model: str
    checkpoint: str | None = None
    adapter: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: bool = False
    model_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def served_name(self) -> str:
        """The model id of ``/v1/models``: ``model_name``, or the last part of a folder path,
        or ``model`` as given (a run name, a Hub id)."""
        if self.model_name:
            return self.model_name
        text = self.model.rstrip("/")
        if text.startswith(("/", "./", "../", "~")):
            return text.rsplit("/", 1)[-1] or text
        return text


def is_local_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): reachable from this
    machine only."""
    text = host.strip().strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    """The base URL clients use: ``http://127.0.0.1:8000/v1`` (IPv6 in brackets)."""
    text = host.strip().strip("[]")
    if ":" in text:
        text = f"[{text}]"
    return f"http://{text}:{port}/v1"


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), as uvicorn binds: SO_REUSEADDR, so
    a port left in TIME_WAIT by a stopped server binds again, but one in use does not.

    Raises :class:`ConfigError` (``host`` or ``port``) with the reason."""
    try:
        infos = socket.getaddrinfo(
            host.strip().strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(
            "host",
            f"host {host!r} does not resolve ({exc.strerror}). Fix: use --host 127.0.0.1 (this machine "
            "only), 0.0.0.0 (every interface, with --api-key) or an address of this machine.",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            holder = _serve_run_on(port)
            who = f" by serve run {holder}" if holder else ""
            stop = f" stop it with `canvas stop {holder}`," if holder else ""
            raise ConfigError(
                "port",
                f"port {port} on {host} is already in use{who}. Fix:{stop} pick another with "
                "--port N, or --port 0 for any free one.",
            ) from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise ConfigError(
                "host",
                f"cannot listen on {host}: {exc.strerror}; it is not an address of this machine. "
                "Fix: use --host 127.0.0.1 or 0.0.0.0.",
            ) from None
        if exc.errno == errno.EACCES:
            raise ConfigError(
                "port",
                f"port {port} needs privileges this user does not have ({exc.strerror}). Fix: use a "
                "port above 1023, e.g. --port 8000.",
            ) from None
        raise ConfigError("port", f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    return sock


def _serve_run_on(port: int) -> str | None:
    """The id of a live serve run of ours whose address has ``port``, if any (for the message)."""
    with contextlib.suppress(Exception):
        from engine.runs.status import run_status
        from engine.runs.store import list_runs

        for run in reversed(list_runs()):
            meta = run.read_meta()
            ours = meta.kind == RunKind.SERVE and meta.url and f":{port}/" in meta.url
            if ours and run_status(run, meta, tail=0).is_live:
                return run.id
    return None


@dataclass(frozen=True)
class Preflight:
    """A serve config that passed every check, and what to show before it starts."""

    config: ServeConfig
    warnings: tuple[str, ...] = ()
    kind: RunKind = RunKind.SERVE

    def summary(self) -> str:
        cfg = self.config
        where = url_for(cfg.host, cfg.port) if cfg.port else f"http://{cfg.host}:<free port>/v1"
        key = "API key required" if cfg.api_key else "no API key (local only)"
        checkpoint = f" ({cfg.checkpoint})" if cfg.checkpoint else ""
        return f"serve {cfg.model}{checkpoint} as {cfg.served_name!r} at {where}; {key}; device {cfg.device}"


def preflight(cfg: ServeConfig, api_key: str | None = None, *, check_port: bool = True) -> Preflight:
    """Check ``cfg`` (see the module docs); ``api_key`` is the key requests must carry (None: none).
    The returned config records only whether there is one."""
    if not isinstance(cfg.model, str) or not cfg.model.strip():
        raise ConfigError("model", "no model given. Fix: `canvas serve RUN_OR_FOLDER_OR_HUB_ID`.")
    if isinstance(cfg.port, bool) or not isinstance(cfg.port, int) or not 0 <= cfg.port <= 65535:
        raise ConfigError(
            "port", f"port {cfg.port!r} is not a TCP port. Fix: a number from 1 to 65535 (0: any free one)."
        )
    if api_key is not None and not api_key.strip():
        raise ConfigError("api_key", "the API key is empty. Fix: give a non-empty --api-key, or none.")
    warnings: list[str] = []
    if not is_local_host(cfg.host):
        if not api_key:
            raise ConfigError(
                "api_key",
                f"refusing to listen on {cfg.host} without an API key: anyone who can reach this "
                "machine could use the model (and its GPU). Fix: add --api-key KEY (clients send "
                "`Authorization: Bearer KEY`), or keep the default --host 127.0.0.1 and reach it "
                "through an SSH tunnel (`ssh -L 8000:127.0.0.1:8000 HOST`).",
            )
        if len(api_key) < MIN_KEY_CHARS:
            warnings.append(
                f"the API key has {len(api_key)} characters; on a non-local bind use at least "
                f"{MIN_KEY_CHARS} random ones (`python -c 'import secrets; print(secrets.token_urlsafe())'`)."
            )
        warnings.append(
            f"listening on {cfg.host}: plain HTTP, so the key and the text travel unencrypted; "
            "put a TLS proxy in front of it, or use an SSH tunnel, across networks you do not trust."
        )
    _check_model(cfg)
    check_device(cfg.device, "dtype", "auto")
    if check_port:
        bind_socket(cfg.host, cfg.port).close()
    pinned = ServeConfig(**{**cfg.to_dict(), "api_key": bool(api_key)})
    return Preflight(pinned, tuple(warnings))


def _check_model(cfg: ServeConfig) -> None:
    """Refuse a model, checkpoint, adapter, device or dtype the worker would refuse, through its own
    torch-free checks (:mod:`engine.serve.models`), before minutes of loading."""
    from engine.serve import models
    from engine.serve.protocol import ProtocolError

    flags = {"model": "model", "checkpoint": "checkpoint", "adapter": "adapter", "device": "device"}
    try:
        models.check_device(cfg.device)
        models.check_dtype(cfg.dtype)
        models.resolve(cfg.model, cfg.checkpoint, cfg.adapter)
    except ProtocolError as exc:
        raise ConfigError(flags.get(exc.field or "", exc.field or "model"), exc.message) from None


def engine_argv(run_dir: str) -> list[str]:
    return python_argv(ENGINE, "--run-dir", run_dir)


def create(cfg: ServeConfig, name: str | None = None, api_key: str | None = None) -> Started:
    """Preflight ``cfg`` and create the run directory without launching: for a caller that serves
    in its own process (the benchmark, tests). Nothing is created when a check refuses."""
    from engine.runs import create_run

    checked = preflight(cfg, api_key)
    return Started(create_run(RunKind.SERVE, name, checked.config.to_dict()), checked)


def start(
    cfg: ServeConfig,
    name: str | None = None,
    *,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Started:
    """Preflight ``cfg``, then create the run directory and launch the serving engine detached;
    returns at once (the model loads in the engine; run.json's ``url`` appears once it listens).

    Raises :class:`ConfigError` (bad input: nothing was created) or
    :class:`~engine.runs.store.RunStoreError` (the run store or the engine's start failed).
    """
    from engine.runs import launch_detached

    started = create(cfg, name, api_key)
    run: RunDir = started.run
    child_env = {**(env or {}), **({API_KEY_ENV: api_key} if api_key else {})}
    launch_detached(run, engine_argv(str(run.path)), env=child_env)
    return started
