"""The demo chain: Model 1 pre-trained, Model 2 fine-tuned from it, both evaluated, both answering.
Torch-free: the console and ``canvas demo --headless`` import it.

The chain is four steps, each a real, detached run started through the same check-and-start
function the CLI and the console use:

1. ``pretrain``: the ``tiny`` scratch model on the embedded corpus (:func:`engine.train.preflight.start`);
2. ``finetune``: LoRA on the embedded conversations, with step 1's run as the base
   (:func:`engine.finetune.preflight.start`, as ``canvas finetune --base RUN``);
3. ``eval``: both models on their own held-out text (:func:`engine.eval.launch.start`, as
   ``canvas eval M1 M2``: perplexity, bits per byte, ROUGE, BLEU, chrF);
4. ``chat``: one greedy answer from each model to the same question, through the inference worker
   (:class:`engine.serve.client.WorkerClient`); the console then opens the side-by-side chat.

Its state is a small file in the run store's home, ``<home>/demo.json`` (:func:`chain_path`): the
settings, which step is current, and each step's state and run id. Every change is a
read-modify-write under a lock (:func:`edit`). A **driver** (``python -m engine.demo_chain drive``,
started detached by :func:`ensure_driver`, one at a time: it holds ``demo.lock`` while it lives)
advances the chain as the runs end, so the chain goes on with the console or the terminal closed;
opening either again shows where it is, and :func:`ensure_driver` restarts a driver that died.

Each step can be skipped (:func:`skip`: a live run is stopped gracefully, so it keeps its
checkpoint, and the chain moves on with what it has), and the whole chain stopped (:func:`stop`:
the current run stops with a checkpoint) and resumed (:func:`resume`: the stopped run resumes
from its checkpoint, or a step that failed before its run existed is started again).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine import locations
from engine.config.errors import ConfigError
from engine.runs.store import RunDir, RunStoreError, now_iso, resolve_run, write_json_atomic

SCHEMA = 1
FILE_NAME = "demo.json"  # locations.demo_chain_file()
LOCK_NAME = "demo.lock"  # held by the driver while it lives
EDIT_LOCK_NAME = "demo.json.lock"  # held across each read-modify-write of demo.json
DRIVER_LOG = "demo-driver.log"

STEPS = ("pretrain", "finetune", "eval", "chat")
TITLES = {
    "pretrain": "Model 1: pre-train the tiny model on the embedded corpus",
    "finetune": "Model 2: fine-tune Model 1 on the embedded conversations",
    "eval": "Evaluate both (perplexity, bits per byte, ROUGE, BLEU, chrF)",
    "chat": "Ask both the same question",
}
#: Step states. ``skipping``: asked to skip while its run was live (it is stopping).
PENDING, RUNNING, SKIPPING, DONE, SKIPPED, STOPPED, FAILED = (
    "pending",
    "running",
    "skipping",
    "done",
    "skipped",
    "stopped",
    "failed",
)
FINISHED = "done"  # the chain's ``step`` once every step is over
QUESTION = "What is a Python list?"


@dataclass(frozen=True)
class DemoSettings:
    """What the chain trains, and how much. The defaults are the demo; tests pass the smallest."""

    steps: int = 300  # pre-training steps of Model 1
    micro_batch: int = 8
    seq_len: int = 256
    finetune_steps: int = 60  # fine-tuning steps of Model 2
    finetune_seq_len: int = 256
    eval_docs: int = 20  # held-out documents (and conversations) each model is scored on
    new_tokens: int = 32  # tokens each model writes per evaluation sample and for its answer
    question: str = QUESTION
    seed: int = 1337
    device: str = "auto"

    def check(self) -> DemoSettings:
        """ConfigError naming the flag when a size is not a whole number of at least 1."""
        for name in ("steps", "micro_batch", "seq_len", "finetune_steps", "finetune_seq_len", "eval_docs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    name, f"{flag} {value!r}: must be a whole number of at least 1. Fix: e.g. {flag} 2."
                )
        if not isinstance(self.new_tokens, int) or self.new_tokens < 1:
            raise ConfigError(
                "new_tokens", f"--new-tokens {self.new_tokens!r}: at least 1. Fix: --new-tokens 32."
            )
        if not self.question.strip():
            raise ConfigError(
                "question", "--question is empty. Fix: ask something, e.g. --question 'What is a list?'."
            )
        return self

    @classmethod
    def from_dict(cls, data: Any) -> DemoSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


@dataclass
class StepState:
    state: str = PENDING
    run: str | None = None  # the run id, once started
    message: str = ""


@dataclass
class Chain:
    """The contents of ``demo.json``."""

    settings: DemoSettings = field(default_factory=DemoSettings)
    step: str = STEPS[0]  # the current step, or FINISHED
    paused: bool = False  # stopped by the user, or by a failure (``message`` says which)
    message: str = ""
    steps: dict[str, StepState] = field(default_factory=lambda: {s: StepState() for s in STEPS})
    answers: dict[str, str] = field(default_factory=dict)  # "model1" / "model2" -> greedy answer
    device: str = ""  # the line that says where the demo trains
    created: str = ""
    updated: str = ""

    @property
    def finished(self) -> bool:
        return self.step == FINISHED

    def current(self) -> StepState | None:
        return self.steps.get(self.step)

    def run_of(self, step: str) -> RunDir | None:
        run_id = self.steps[step].run
        if not run_id:
            return None
        try:
            return resolve_run(run_id)
        except RunStoreError:
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "settings": asdict(self.settings),
            "step": self.step,
            "paused": self.paused,
            "message": self.message,
            "steps": {k: asdict(v) for k, v in self.steps.items()},
            "answers": dict(self.answers),
            "device": self.device,
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_json(cls, data: Any) -> Chain:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        steps = {s: StepState() for s in STEPS}
        for name, value in (data.get("steps") or {}).items():
            if name in steps and isinstance(value, dict):
                steps[name] = StepState(
                    str(value.get("state", PENDING)), value.get("run"), str(value.get("message", ""))
                )
        step = data.get("step", STEPS[0])
        return cls(
            settings=DemoSettings.from_dict(data.get("settings")),
            step=step if step in (*STEPS, FINISHED) else STEPS[0],
            paused=bool(data.get("paused", False)),
            message=str(data.get("message", "")),
            steps=steps,
            answers={str(k): str(v) for k, v in (data.get("answers") or {}).items()},
            device=str(data.get("device", "")),
            created=str(data.get("created", "")),
            updated=str(data.get("updated", "")),
        )


# ------------------------------------------------------------------------------ the file
def home() -> Path:
    """Where demo.json lives: the run store's parent (``CANVAS_HOME`` when set)."""
    return locations.runs_dir().parent


def chain_path() -> Path:
    return locations.demo_chain_file()


def load_chain() -> Chain | None:
    """The chain, or None when no demo was started (or the file is unreadable: start a new one)."""
    try:
        return Chain.from_json(json.loads(chain_path().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _save(chain: Chain) -> None:
    chain.updated = now_iso()
    locations.ensure_private_dir(home())
    write_json_atomic(chain_path(), chain.to_json())  # temporary name, then rename


@contextlib.contextmanager
def _flock(name: str, *, block: bool = True) -> Iterator[bool]:
    """Hold the advisory lock ``<home>/name``; yields False (without blocking) when another holds it."""
    import fcntl

    locations.ensure_private_dir(home())
    fd = os.open(home() / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def edit() -> Iterator[Chain]:
    """Read demo.json, let the caller change it, write it back atomically, all under the edit lock.
    RunStoreError when there is no chain."""
    with _flock(EDIT_LOCK_NAME):
        chain = load_chain()
        if chain is None:
            raise RunStoreError(
                f"no demo has been started ({chain_path()} does not exist). Fix: `canvas demo --headless`."
            )
        yield chain
        _save(chain)


# ------------------------------------------------------------------------------ device
def device_line(gpus: tuple[int | None, str] | None = None) -> str:
    """The demo's first line: where it trains and how (``gpus``: as :func:`engine.preflight.visible_gpus`)."""
    from engine.preflight import cpu_cores, visible_gpus

    count, why = visible_gpus() if gpus is None else gpus
    if count:
        return (
            f"GPU found ({why}): the demo trains on CUDA in bf16 (where the GPU has it) with torch.compile; "
            "the first steps wait for the compile."
        )
    return (
        f"No GPU: {why}. The demo trains on the CPU ({cpu_cores()} cores) in bf16 where the CPU has it, "
        "else fp32: a few minutes on 2 cores."
    )


def has_gpu(gpus: tuple[int | None, str] | None = None) -> bool:
    from engine.preflight import visible_gpus

    return bool((visible_gpus() if gpus is None else gpus)[0])


# ------------------------------------------------------------------------------ the configs
def pretrain_config(settings: DemoSettings, gpu: bool = False) -> Any:
    """Model 1's run config: the tiny preset, ``settings.steps`` long, samples as it learns."""
    from engine.config.train import load_train_config

    steps = settings.steps
    sets = [
        f"max_steps={steps}",
        f"micro_batch={settings.micro_batch}",
        f"seq_len={settings.seq_len}",
        "lr=3e-3",
        f"seed={settings.seed}",
        f"log_every={max(1, min(10, steps // 30))}",
        "eval_batches=4",
        f"sample_every={steps // 5 if steps >= 10 else 0}",
        f"device={settings.device}",
    ]
    if gpu:
        sets.append("compile=true")  # auto is on for CUDA too: say it, the first line promised it
    return load_train_config("tiny", sets=sets)


def finetune_config(settings: DemoSettings, base: str) -> Any:
    """Model 2's run config: LoRA on ``base`` (a run id; "" the newest pre-training run) with the
    embedded conversations. No quantisation: the base is a few million parameters."""
    from engine.config.finetune import load_finetune_config

    steps = settings.finetune_steps
    sets = [
        f"max_steps={steps}",
        f"seq_len={settings.finetune_seq_len}",
        "micro_batch=4",
        "grad_accum=1",
        "quantization=none",
        "gradient_checkpointing=false",
        "lora_r=8",
        "lora_alpha=16",
        "lr=2e-3",
        f"seed={settings.seed}",
        f"log_every={max(1, min(5, steps // 20))}",
        "eval_batches=4",
        f"device={settings.device}",
    ]
    return load_finetune_config(base or None, None, sets, "embedded")


def eval_config(settings: DemoSettings, models: tuple[str, ...]) -> Any:
    from engine.eval.launch import EvalConfig

    return EvalConfig(
        models=models,
        samples=settings.eval_docs,
        prompt_tokens=32,
        new_tokens=settings.new_tokens,
        seed=settings.seed,
        device=settings.device,
        n_bootstrap=200,
    )


# ------------------------------------------------------------------------------ starting
def new_chain(settings: DemoSettings, gpus: tuple[int | None, str] | None = None) -> Chain:
    """Write a fresh demo.json (replacing a finished or abandoned one); nothing is started yet."""
    settings.check()
    chain = Chain(settings=settings, device=device_line(gpus), created=now_iso())
    with _flock(EDIT_LOCK_NAME):
        _save(chain)
    return chain


def _start_step(chain: Chain, step: str) -> str:
    """Start ``step``'s run through its kind's check-and-start; returns the run id."""
    settings = chain.settings
    if step == "pretrain":
        from engine.train import preflight as train_preflight

        return train_preflight.start(pretrain_config(settings, has_gpu())).run.id
    if step == "finetune":
        from engine.finetune import preflight as ft_preflight

        return ft_preflight.start(finetune_config(settings, chain.steps["pretrain"].run or "")).run.id
    if step == "eval":
        from engine.eval import launch

        models = tuple(r for r in (chain.steps["pretrain"].run, chain.steps["finetune"].run) if r)
        return launch.start(eval_config(settings, models)).run.id
    raise ValueError(step)


def _next(chain: Chain) -> None:
    i = STEPS.index(chain.step)
    chain.step = STEPS[i + 1] if i + 1 < len(STEPS) else FINISHED


def advance(chain: Chain) -> str | None:
    """Move the chain on by what the runs did; returns a line saying what changed (None: nothing).

    Call under :func:`edit`. The ``chat`` step is not a run: :func:`drive` answers it."""
    from engine.runs.status import run_status

    if chain.paused or chain.finished:
        return None
    step = chain.step
    cur = chain.steps[step]
    if cur.state in (DONE, SKIPPED):
        _next(chain)
        return None
    if step == "chat":
        if cur.state == SKIPPING:
            cur.state = SKIPPED
            _next(chain)
            return "skipped: " + TITLES[step]
        return None
    if cur.state == PENDING or (cur.state == SKIPPING and not cur.run):
        if cur.state == SKIPPING:
            cur.state = SKIPPED
            _next(chain)
            return "skipped: " + TITLES[step]
        try:
            cur.run = _start_step(chain, step)
        except (ConfigError, RunStoreError) as exc:
            cur.state, cur.message = FAILED, str(exc)
            chain.paused, chain.message = True, f"{step} could not start: {exc}"
            return chain.message
        cur.state, cur.message = RUNNING, ""
        return f"started {cur.run}: {TITLES[step]}"
    if cur.state not in (RUNNING, SKIPPING):
        return None  # stopped or failed: resume() picks it up
    run = chain.run_of(step)
    if run is None:
        cur.state, cur.message = FAILED, f"run {cur.run} is gone from the run store"
        chain.paused, chain.message = True, cur.message
        return cur.message
    status = run_status(run, tail=0)
    if status.is_live:
        return None
    if status.state == "finished":
        cur.state = DONE
        _next(chain)
        return f"finished {cur.run}: {TITLES[step]}"
    if cur.state == SKIPPING:
        cur.state = SKIPPED
        _next(chain)
        return f"skipped: {TITLES[step]} ({cur.run} {status.state})"
    if status.state == "stopped":
        cur.state, cur.message = STOPPED, status.message
        chain.paused, chain.message = True, f"{step} was stopped: resume the demo to go on, or skip the step"
        return chain.message
    cur.state, cur.message = FAILED, status.message or status.state
    chain.paused, chain.message = True, f"{step} {status.state}: {cur.message}"
    return chain.message


# ------------------------------------------------------------------------------ user actions
def skip(*, driver: bool = True) -> str:
    """Skip the current step: its live run is asked to stop (keeping a checkpoint); the driver moves on
    (``driver``: start one if none runs)."""
    from engine.runs.control import stop_run
    from engine.runs.status import run_status

    with edit() as chain:
        if chain.finished:
            return "the demo is over: nothing to skip"
        step, cur = chain.step, chain.steps[chain.step]
        run = chain.run_of(step)
        if run is not None and run_status(run, tail=0).is_live:
            stop_run(run)
            cur.state = SKIPPING
        else:
            cur.state = SKIPPED
            _next(chain)
        chain.paused, chain.message = False, ""
    if driver:
        ensure_driver()
    return f"skipping {step}: {TITLES[step]}"


def stop() -> str:
    """Pause the chain; the current run stops gracefully with a checkpoint."""
    from engine.runs.control import stop_run
    from engine.runs.status import run_status

    with edit() as chain:
        chain.paused, chain.message = True, "stopped: resume the demo to go on"
        run = chain.run_of(chain.step) if not chain.finished else None
        if run is not None and run_status(run, tail=0).is_live:
            stop_run(run)
        step = chain.step
    return f"demo stopped at {step}"


def resume(*, driver: bool = True) -> str:
    """Go on: a stopped or crashed run resumes from its checkpoint; a step that failed to start,
    starts again; then the driver runs."""
    from engine.runs.control import resume_run
    from engine.runs.status import run_status

    with edit() as chain:
        chain.paused, chain.message = False, ""
        if not chain.finished:
            cur = chain.steps[chain.step]
            run = chain.run_of(chain.step)
            if run is not None and not run_status(run, tail=0).is_live:
                state = run_status(run, tail=0).state
                if state == "finished":
                    cur.state = RUNNING  # advance() sees it finished
                elif state in ("stopped", "crashed", "failed"):
                    try:
                        resume_run(run)
                        cur.state, cur.message = RUNNING, ""
                    except RunStoreError:  # no checkpoint yet: start the step afresh
                        cur.state, cur.run, cur.message = PENDING, None, ""
            elif run is None and cur.state in (FAILED, STOPPED):
                cur.state, cur.message = PENDING, ""
        step = chain.step
    if driver:
        ensure_driver()
    return f"demo resumed at {step}"


# ------------------------------------------------------------------------------ the driver
def driver_running() -> bool:
    with _flock(LOCK_NAME, block=False) as got:
        return not got


def ensure_driver() -> bool:
    """Start a detached driver unless one runs (or the chain is over/paused); True when one was started."""
    from engine.runs.process import python_argv, spawn_detached

    chain = load_chain()
    if chain is None or chain.finished or chain.paused or driver_running():
        return False
    repo = Path(__file__).resolve().parents[1]
    env = {
        "PYTHONPATH": str(repo)
        + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    }
    spawn_detached(python_argv("engine.demo_chain", "drive"), home() / DRIVER_LOG, env=env, cwd=repo)
    return True


def answer(model: str, question: str, new_tokens: int, device: str, log: Path) -> str:
    """One greedy answer of ``model`` (a run id) to ``question``, through the inference worker: as a
    chat turn for a model with a chat template, else as text to continue."""
    from engine.serve.client import WorkerClient

    with WorkerClient.spawn(log_path=log) as client:
        ready = client.load(model, device=device)
        if ready.chat:
            stream = client.generate(
                messages=[{"role": "user", "content": question}], max_new_tokens=new_tokens, temperature=0.0
            )
        else:
            stream = client.generate(prompt=question + "\n", max_new_tokens=new_tokens, temperature=0.0)
        return stream.wait().text


def _answer_all(chain: Chain) -> dict[str, str]:
    from engine.serve.client import WorkerError

    out: dict[str, str] = {}
    for key, step in (("model1", "pretrain"), ("model2", "finetune")):
        run_id = chain.steps[step].run
        if not run_id:
            continue
        try:
            out[key] = answer(
                run_id,
                chain.settings.question,
                chain.settings.new_tokens,
                chain.settings.device,
                home() / "demo-chat.log",
            )
        except WorkerError as exc:
            out[key] = f"(no answer: {exc})"
    return out


def drive(
    echo: Callable[[str], None] = print, poll: float = 1.0, until: Callable[[], bool] | None = None
) -> Chain | None:
    """Advance the chain until it is over or paused (or ``until()`` says stop); one driver at a time:
    returns None at once when another holds the driver lock."""
    with _flock(LOCK_NAME, block=False) as got:
        if not got:
            return None
        while True:
            with edit() as chain:
                try:
                    line = advance(chain)
                except Exception as exc:  # recorded: never a crash loop of drivers
                    chain.paused, chain.message = True, f"the demo driver failed: {type(exc).__name__}: {exc}"
                    line = chain.message
                # RUNNING too: a driver that held the lock before us died while asking
                answering = (
                    not chain.paused
                    and chain.step == "chat"
                    and chain.steps["chat"].state in (PENDING, RUNNING)
                )
                if answering:
                    chain.steps["chat"].state = RUNNING
            if line:
                echo(line)
            if answering:
                echo("asking both models: " + chain.settings.question)
                answers = _answer_all(chain)
                with edit() as chain:
                    chain.answers = answers
                    if chain.steps["chat"].state == RUNNING:
                        chain.steps["chat"].state = DONE
                        chain.step = FINISHED
                echo("both answered: the demo is done")
                continue
            if chain.finished or chain.paused or (until is not None and until()):
                return chain
            time.sleep(poll)


def _fmt(value: Any, digits: int = 4) -> str:
    """A number as the summary prints it (``-``: not recorded)."""
    if value is None or isinstance(value, bool):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float) or value != value:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def _run_figures(run: RunDir | None) -> dict[str, Any]:
    """What a training run recorded: parameters, tokens seen, final losses, energy and emissions."""
    from engine.runs.events import Carbon, Eval, Metric, RunInfo
    from engine.runs.reader import EventReader

    out: dict[str, Any] = {}
    if run is None:
        return out
    for event in EventReader(run.events_path).read_events():
        if isinstance(event, RunInfo):
            out["params"], out["trainable"] = event.params, event.trainable_params
        elif isinstance(event, Metric) and event.loss is not None:
            out["loss"], out["tokens"] = event.loss, event.tokens
        elif isinstance(event, Eval) and event.val_loss is not None:
            out["val_loss"] = event.val_loss
        elif isinstance(event, Carbon):
            out["kwh"], out["kg"] = event.energy_kwh, event.emissions_kg
    return out


def summary(chain: Chain) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The headless demo's table (rows of label, Model 1, Model 2) and the lines under it, every
    figure read back from the run store: the runs' events and the eval run's results.json."""
    m1, m2 = _run_figures(chain.run_of("pretrain")), _run_figures(chain.run_of("finetune"))
    results: dict[str, dict[str, Any]] = {}
    eval_run = chain.run_of("eval")
    if eval_run is not None:
        from engine.eval.results import ResultsError, read_results

        try:
            found = read_results(eval_run.path)
        except (ResultsError, OSError):
            found = None
        if found is not None:
            for key, step in (("model1", "pretrain"), ("model2", "finetune")):
                run_id = chain.steps[step].run
                for model in found.models:
                    if model.run_id == run_id and model.adapter is not False:
                        results[key] = {k: model.value(k) for k in model.metrics}
    r1, r2 = results.get("model1", {}), results.get("model2", {})

    def params(f: dict[str, Any]) -> str:
        text = _fmt(f.get("params"))
        return text + (f" ({_fmt(f['trainable'])} trained)" if f.get("trainable") else "")

    rows = [
        ("parameters", params(m1), params(m2)),
        ("tokens seen", _fmt(m1.get("tokens")), _fmt(m2.get("tokens"))),
        ("final training loss", _fmt(m1.get("loss")), _fmt(m2.get("loss"))),
        ("final validation loss", _fmt(m1.get("val_loss")), _fmt(m2.get("val_loss"))),
        ("perplexity (held-out)", _fmt(r1.get("perplexity")), _fmt(r2.get("reply_perplexity"))),
        ("bits per byte", _fmt(r1.get("bits_per_byte")), _fmt(r2.get("bits_per_byte"))),
        ("ROUGE-L", _fmt(r1.get("rougeL")), _fmt(r2.get("rougeL"))),
        ("BLEU", _fmt(r1.get("bleu")), _fmt(r2.get("bleu"))),
        ("chrF", _fmt(r1.get("chrf")), _fmt(r2.get("chrf"))),
        ("energy, kWh", _fmt(m1.get("kwh"), 6), _fmt(m2.get("kwh"), 6)),
        ("emissions, kg CO2eq", _fmt(m1.get("kg"), 6), _fmt(m2.get("kg"), 6)),
    ]
    ev = _run_figures(eval_run)
    total_kwh = sum(x for x in (m1.get("kwh"), m2.get("kwh"), ev.get("kwh")) if isinstance(x, float))
    total_kg = sum(x for x in (m1.get("kg"), m2.get("kg"), ev.get("kg")) if isinstance(x, float))
    notes = [
        "perplexity: Model 1 on held-out documents of the corpus, Model 2 on the replies of held-out "
        "conversations; ROUGE/BLEU/chrF: their generations against the held-out references.",
        f"the whole demo (the runs that measured it): {_fmt(total_kwh, 6)} kWh, "
        f"{_fmt(total_kg, 6)} kg CO2eq.",
        f"question: {chain.settings.question}",
        f"Model 1 (greedy): {chain.answers.get('model1', '-')!r}",
        f"Model 2 (greedy): {chain.answers.get('model2', '-')!r}",
    ]
    return rows, notes


def render_summary(chain: Chain) -> str:
    rows, notes = summary(chain)
    head = (
        "",
        f"Model 1 ({chain.steps['pretrain'].run or '-'})",
        f"Model 2 ({chain.steps['finetune'].run or '-'})",
    )
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([*lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["drive"]:
        print("usage: python -m engine.demo_chain drive", file=sys.stderr)
        return 2
    chain = drive(lambda s: print(f"{now_iso()} {s}", flush=True))
    if chain is None:
        print("another demo driver is running", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
