"""Check and start an ``eval`` run: the one path ``canvas eval`` and the Evaluation screen take.
Torch-free.

An evaluation is an engine process (``python -m engine.eval.worker --run-dir DIR``) that loads
each model in turn through :class:`engine.serve.session.InferenceSession`, scores perplexity and
generation on held-out text, and writes ``results.json`` and ``samples.jsonl`` into its run
directory. Like every run kind it has a torch-free :func:`preflight` (everything that needs no
model) and a :func:`start` that preflights, creates the run directory and launches the detached
engine, so a refused evaluation leaves nothing behind.

What :func:`preflight` refuses, each with a :class:`~engine.config.errors.ConfigError` naming the
flag and the fix: no model, the same model twice, a model that is not a run, folder or cached Hub
id (or a pre-training run with no checkpoint yet), an unknown task, ``--samples`` below 1,
``--prompt-tokens`` or ``--new-tokens`` below 1, a ``--data`` spec the grammar rejects (or whose
local files are missing), and a model folder or Hub id without ``--data`` (it has no held-out split
of its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.config.errors import ConfigError
from engine.preflight import Started
from engine.runs.meta import RunKind
from engine.runs.process import python_argv

#: The engine module an eval run runs.
ENGINE = "engine.eval.worker"

TASKS = ("perplexity", "generation")
DEFAULT_SAMPLES = 100
DEFAULT_PROMPT_TOKENS = 64
DEFAULT_NEW_TOKENS = 64
N_BOOTSTRAP = 1000

#: ConfigError fields as the command line spells them.
FLAGS = {
    "models": "MODEL",
    "model": "MODEL",
    "checkpoint": "--checkpoint",
    "data": "--data",
    "samples": "--samples",
    "tasks": "--tasks",
    "seed": "--seed",
    "prompt_tokens": "--prompt-tokens",
    "new_tokens": "--new-tokens",
    "device": "--device",
    "dtype": "--dtype",
    "with_base": "--with-base",
}


@dataclass(frozen=True)
class EvalConfig:
    """What an evaluation scores; stored in run.json's ``config``.

    ``models``: runs (id, prefix or name), model folders or cached Hub ids, as ``canvas generate``
    takes them. ``checkpoint`` applies to every run among them (default: best, else the newest).
    ``data``: a data spec (the same text for every model); None: each run's own held-out split.
    ``samples``: documents (or conversations) per text source. ``tasks``: ``perplexity`` and/or
    ``generation``. ``with_base``: each fine-tune also evaluated with its adapter off.
    ``prompt_tokens`` / ``new_tokens``: P and C of the generation task."""

    models: tuple[str, ...]
    checkpoint: str | None = None
    data: str | None = None
    samples: int = DEFAULT_SAMPLES
    tasks: tuple[str, ...] = TASKS
    seed: int = 0
    with_base: bool = False
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    new_tokens: int = DEFAULT_NEW_TOKENS
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    n_bootstrap: int = N_BOOTSTRAP
    #: Filled by preflight: what each entry of ``models`` resolved to (kind, label, run id).
    resolved: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["models"] = list(self.models)
        out["tasks"] = list(self.tasks)
        out["resolved"] = [dict(r) for r in self.resolved]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("models", "tasks", "resolved"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)


def parse_tasks(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"perplexity,generation"`` (or a list) as a tuple in the given order; ConfigError('tasks')
    naming an unknown one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    tasks = tuple(dict.fromkeys(t.strip() for t in items if t.strip()))
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        what = f"{', '.join(map(repr, bad))} is not a task" if bad else "no task given"
        raise ConfigError(
            "tasks",
            f"--tasks: {what}. Fix: pass a comma list of {', '.join(TASKS)} "
            "(e.g. --tasks perplexity,generation).",
        )
    return tasks


@dataclass(frozen=True)
class Preflight:
    """An eval config that passed every check, and what to show before it starts."""

    config: EvalConfig
    warnings: tuple[str, ...] = ()
    kind: RunKind = RunKind.EVAL

    def summary(self) -> str:
        cfg = self.config
        names = ", ".join(r.get("label", m) for r, m in zip(cfg.resolved, cfg.models, strict=False))
        text = f"data {cfg.data}" if cfg.data else "each run's held-out split"
        base = "; fine-tunes also with the adapter off" if cfg.with_base else ""
        return (
            f"evaluate {names} on {text}: {cfg.samples} samples, tasks {','.join(cfg.tasks)}, "
            f"P={cfg.prompt_tokens} C={cfg.new_tokens}, seed {cfg.seed}{base}"
        )


def _whole(value: Any, name: str, least: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(
            name, f"{FLAGS.get(name, name)} {value!r} must be a whole number of at least {least}. {fix}"
        )
    return value


def preflight(cfg: EvalConfig) -> Preflight:
    """Check ``cfg`` (see the module docs); the returned config records what each model resolved to."""
    from engine.serve import models
    from engine.serve.protocol import ProtocolError

    if not cfg.models or not all(isinstance(m, str) and m.strip() for m in cfg.models):
        raise ConfigError(
            "models",
            "no model given. Fix: `canvas eval MODEL [MODEL …]` with runs, model folders or Hub ids.",
        )
    tasks = parse_tasks(cfg.tasks)
    _whole(cfg.samples, "samples", 1, "Fix: e.g. --samples 100 (documents or conversations per text).")
    _whole(cfg.prompt_tokens, "prompt_tokens", 1, "Fix: e.g. --prompt-tokens 64.")
    _whole(cfg.new_tokens, "new_tokens", 1, "Fix: e.g. --new-tokens 64.")
    _whole(cfg.batch_size, "batch_size", 1, "Fix: e.g. 8.")
    _whole(cfg.n_bootstrap, "n_bootstrap", 1, "Fix: e.g. 1000.")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError("seed", f"--seed {cfg.seed!r} must be a whole number. Fix: e.g. --seed 0.")
    data = cfg.data.strip() if isinstance(cfg.data, str) and cfg.data.strip() else None
    if data is not None:
        from engine.data.spec import parse_spec, validate_spec

        try:
            validate_spec(parse_spec(data, field_name="data"), field_name="data")
        except ConfigError as exc:
            raise ConfigError("data", f"--data: {exc.message}") from None
    flags = {"model": "models", "checkpoint": "checkpoint", "adapter": "models", "device": "device"}
    resolved: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    warnings: list[str] = []
    try:
        models.check_device(cfg.device)
        models.check_dtype(cfg.dtype)
    except ProtocolError as exc:
        raise ConfigError(flags.get(exc.field or "", "device"), exc.message) from None
    for spec in cfg.models:
        try:
            r = models.resolve(spec, cfg.checkpoint)
        except ProtocolError as exc:
            raise ConfigError(flags.get(exc.field or "", "models"), f"{spec}: {exc.message}") from None
        key = f"{r.run_id or r.weights or r.source}|{r.adapter}|{r.checkpoint}"
        if key in seen:
            raise ConfigError(
                "models",
                f"{spec!r} names the same model as {seen[key]!r}. Fix: give each model once "
                "(--with-base adds a fine-tune's base without naming it again).",
            )
        seen[key] = spec
        if data is None and r.kind == "hf":
            raise ConfigError(
                "data",
                f"{spec!r} is a model folder or Hub id, which has no held-out split of its own. Fix: "
                "pass --data SPEC (e.g. --data embedded?limit=200) so every model reads the same text.",
            )
        if data is None and r.kind in ("pretrain", "finetune"):
            _check_own_split(spec, r)
        if r.training:
            warnings.append(
                f"{r.label} is still training: its current checkpoint ({r.checkpoint}) is scored."
            )
        resolved.append(
            {"model": spec, "label": r.label, "kind": r.kind, "run_id": r.run_id, "checkpoint": r.checkpoint}
        )
    if cfg.with_base and not any(r["kind"] == "finetune" for r in resolved):
        warnings.append("--with-base has no effect: none of the models is a fine-tune.")
    if data is None and "generation" in tasks and not any(r["kind"] == "finetune" for r in resolved):
        pass  # pre-training runs: continuation of their own validation documents
    pinned = EvalConfig(
        **{
            **cfg.to_dict(),
            "models": tuple(m.strip() for m in cfg.models),
            "tasks": tasks,
            "data": data,
            "resolved": tuple(resolved),
        }
    )
    return Preflight(pinned, tuple(warnings))


def _check_own_split(spec: str, r: Any) -> None:
    """A run read without --data needs the data settings its training recorded (to find its
    held-out split again); one without them (made by hand, or by an older version) is refused."""
    from engine.runs.store import RunDir

    config = dict(r.config) or dict(RunDir(r.run_path).read_meta().config)
    try:
        if "data" not in config:
            raise ValueError("no 'data' key")
        if r.kind == "pretrain":
            from engine.config.train import TrainConfig

            cfg: Any = TrainConfig.from_dict(config)
        else:
            from engine.config.finetune import FinetuneConfig

            cfg = FinetuneConfig.from_dict(config)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(
            "data",
            f"{spec!r}: its run.json does not record the data settings its training used ({exc}), so "
            "its held-out split cannot be found. Fix: pass --data SPEC.",
        ) from None
    if not cfg.data or not cfg.val_fraction:
        raise ConfigError(
            "data",
            f"{spec!r} was trained with no held-out split (val_fraction = {cfg.val_fraction}). "
            "Fix: pass --data SPEC to evaluate it on other text.",
        )


def engine_argv(run_dir: str) -> list[str]:
    return python_argv(ENGINE, "--run-dir", run_dir)


def create(cfg: EvalConfig, name: str | None = None) -> Started:
    """Preflight ``cfg`` and create the run directory without launching: for a caller that
    evaluates in its own process (tests, the benchmark). Nothing is created when a check refuses."""
    from engine.runs import create_run

    checked = preflight(cfg)
    return Started(create_run(RunKind.EVAL, name, checked.config.to_dict()), checked)


def start(cfg: EvalConfig, name: str | None = None, *, env: Mapping[str, str] | None = None) -> Started:
    """Preflight ``cfg``, then create the run directory and launch the evaluation engine detached;
    returns at once.

    Raises :class:`ConfigError` (bad input: nothing was created) or
    :class:`~engine.runs.store.RunStoreError` (the run store or the engine's start failed).
    """
    from engine.runs import launch_detached

    started = create(cfg, name)
    launch_detached(started.run, engine_argv(str(started.run.path)), env=dict(env or {}))
    return started
