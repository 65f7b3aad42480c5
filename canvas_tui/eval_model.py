"""What the Evaluation screen shows, computed without Textual and without torch.

- :func:`scan_evals` lists every ``eval`` run of the store (newest first): the finished ones with
  their ``results.json`` (one :class:`ModelRow` per evaluated model), and the live or ended ones
  without results with their latest progress (:class:`EvalRunState`). ``results.json`` is parsed
  again only when it changed (:class:`EvalTracker` keeps a cache keyed by size and mtime), and a
  live run's ``events.jsonl`` is read incrementally, like the Runs screen does.
- :data:`METRICS` are the comparison table's columns, each knowing whether lower is better
  (perplexities, bits per byte) or higher (ROUGE, BLEU, chrF, tokens/s); :func:`sort_rows` puts the
  best first and :func:`fmt_metric` writes a value with its interval compactly
  (``1.234 ±0.05``, or ``1.23 [1.18, 1.29]`` when the interval is lopsided).
- :func:`arena_view` fits Bradley–Terry ratings on ``battles.jsonl`` (through
  :mod:`engine.eval.arena`), or says there are no battles yet.
- :func:`read_samples` / :func:`sample_rows` feed the per-sample browser: prompt, reference, each
  model's output and scores, and the difference between two chosen models on one metric.

The files are read by the shapes of issue 14 (results.json schema 1, samples.jsonl lines,
battles.jsonl lines). Reading is tolerant: a field missing or of the wrong type reads as absent,
so a newer engine's files never take the screen down. :func:`load_results_json` and
:func:`read_samples` are the two places that know the file formats.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runs.events import Log, Progress, Status
from engine.runs.meta import RunKind
from engine.runs.reader import EventReader
from engine.runs.status import run_status
from engine.runs.store import RunDir, RunStoreError, list_runs

RESULTS = "results.json"
SAMPLES = "samples.jsonl"


# ------------------------------------------------------------------------------------ the metrics
@dataclass(frozen=True)
class MetricSpec:
    """One column of the comparison table. ``key``: the results.json metric (``tokens_per_s`` is the
    model's own field); ``lower_better``: perplexities and bits per byte."""

    key: str
    title: str
    lower_better: bool
    help: str = ""

    @property
    def arrow(self) -> str:
        return "↓" if self.lower_better else "↑"


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("bits_per_byte", "bpb", True, "bits per byte (the headline: compares tokenizers)"),
    MetricSpec("perplexity", "ppl", True, "token perplexity"),
    MetricSpec("word_perplexity", "word ppl", True, "word perplexity"),
    MetricSpec("byte_perplexity", "byte ppl", True, "byte perplexity"),
    MetricSpec("reply_perplexity", "reply ppl", True, "perplexity of the assistant replies"),
    MetricSpec("rouge1", "R-1", False, "ROUGE-1 F"),
    MetricSpec("rouge2", "R-2", False, "ROUGE-2 F"),
    MetricSpec("rougeL", "R-L", False, "ROUGE-L F"),
    MetricSpec("rougeLsum", "R-Lsum", False, "ROUGE-Lsum F"),
    MetricSpec("bleu", "BLEU", False, "corpus BLEU (sacrebleu)"),
    MetricSpec("chrf", "chrF", False, "corpus chrF (sacrebleu)"),
    MetricSpec("chrf_pp", "chrF++", False, "corpus chrF++ (sacrebleu)"),
    MetricSpec("tokens_per_s", "tok/s", False, "evaluation throughput"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}

#: The per-sample scores of samples.jsonl, in the order the browser cycles them.
SAMPLE_METRICS = ("rougeL", "rouge1", "rouge2", "rougeLsum", "chrf", "bleu")


@dataclass(frozen=True)
class Value:
    """A number with its 95% interval (``lo``/``hi`` None when there is none)."""

    value: float
    lo: float | None = None
    hi: float | None = None


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _value(raw: Any) -> Value | None:
    """A results.json Metric (``{"value": v, "ci95": [lo, hi] | None}``) or a bare number."""
    if isinstance(raw, Mapping):
        v = _num(raw.get("value"))
        if v is None:
            return None
        ci = raw.get("ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = _num(ci[0]), _num(ci[1])
            if lo is not None and hi is not None:
                return Value(v, min(lo, hi), max(lo, hi))
        return Value(v)
    v = _num(raw)
    return None if v is None else Value(v)


def _decimals(v: float) -> int:
    a = abs(v)
    if a >= 1000:
        return 0
    if a >= 100:
        return 1
    if a >= 10:
        return 2
    return 3


def fmt_value(v: float | None, decimals: int | None = None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v:.3g}"
    return f"{v:.{_decimals(v) if decimals is None else decimals}f}"


def fmt_metric(value: Value | None, *, brackets: bool | None = None) -> str:
    """``1.234 ±0.05`` for a (nearly) symmetric interval, ``1.23 [1.18, 1.29]`` for a lopsided one
    (or when ``brackets``); the bare value without an interval; ``-`` when absent."""
    if value is None:
        return "-"
    v, lo, hi = value.value, value.lo, value.hi
    if lo is None or hi is None:
        return fmt_value(v)
    half = (hi - lo) / 2
    lopsided = half > 0 and abs((hi - v) - (v - lo)) > 0.25 * half
    if brackets or (brackets is None and (lopsided or not lo <= v <= hi)):
        d = max(0, _decimals(v) - 1)
        return f"{v:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"
    return f"{fmt_value(v)} ±{half:.2g}"


# ------------------------------------------------------------------------------------ the rows
@dataclass(frozen=True)
class ModelRow:
    """One evaluated model of one evaluation run: a row of the comparison table."""

    key: str  # unique: "<eval run id>:<index>"
    label: str
    model: str
    checkpoint: str | None
    run_id: str | None  # the evaluated run, when it is one of ours
    kind: str
    adapter: bool | None
    eval_id: str
    eval_name: str
    eval_path: str
    created: str
    metrics: dict[str, Value]
    tokenizer: str = ""
    window: int | None = None
    documents: int | None = None
    bleu_signature: str = ""
    chrf_signature: str = ""

    def title(self) -> str:
        """``label @checkpoint``."""
        return f"{self.label} @{self.checkpoint}" if self.checkpoint else self.label

    def get(self, key: str) -> Value | None:
        return self.metrics.get(key)


@dataclass(frozen=True)
class ComparisonView:
    a: str
    b: str
    metric: str
    difference: float | None
    lo: float | None
    hi: float | None
    p_value: float | None
    verdict: str


@dataclass(frozen=True)
class EvalResultsView:
    """One finished evaluation run as the screen shows it."""

    eval_id: str
    eval_name: str
    path: str
    created: str
    settings: dict[str, Any]
    rows: tuple[ModelRow, ...]
    comparisons: tuple[ComparisonView, ...]

    def settings_text(self) -> str:
        s = self.settings
        parts = []
        data = s.get("data")
        parts.append(f"data {data}" if isinstance(data, str) and data else "each run's held-out split")
        for key, title in (
            ("samples", "samples"),
            ("seed", "seed"),
            ("prompt_tokens", "P"),
            ("continuation_tokens", "C"),
        ):
            if s.get(key) is not None:
                parts.append(f"{title} {s.get(key)}")
        tasks = s.get("tasks")
        if isinstance(tasks, list) and tasks:
            parts.append("tasks " + ",".join(str(t) for t in tasks))
        return " · ".join(parts)


def load_results_json(path: Path) -> dict[str, Any]:
    """results.json as its JSON object, through :func:`engine.eval.results.read_results` (which
    checks the schema; ResultsError is a ValueError)."""
    from engine.eval.results import read_results

    data = read_results(path).to_json()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _str(x: Any, default: str = "") -> str:
    return x if isinstance(x, str) else default


def parse_results(
    data: Mapping[str, Any], *, eval_id: str, eval_name: str, path: str, created: str = ""
) -> EvalResultsView:
    """results.json (schema 1) as rows and comparisons; malformed entries are skipped."""
    rows = []
    models = data.get("models")
    for i, m in enumerate(models if isinstance(models, list) else []):
        if not isinstance(m, Mapping):
            continue
        metrics: dict[str, Value] = {}
        raw = m.get("metrics")
        for key, rv in raw.items() if isinstance(raw, Mapping) else ():
            value = _value(rv)
            if value is not None and isinstance(key, str):
                metrics[key] = value
        tps = _num(m.get("tokens_per_s"))
        if tps is not None and "tokens_per_s" not in metrics:
            metrics["tokens_per_s"] = Value(tps)
        label = _str(m.get("label")) or _str(m.get("model")) or f"model {i + 1}"
        window = m.get("window")
        documents = m.get("documents")
        adapter = m.get("adapter")
        rows.append(
            ModelRow(
                key=f"{eval_id}:{i}",
                label=label,
                model=_str(m.get("model"), label),
                checkpoint=_str(m.get("checkpoint")) or None,
                run_id=_str(m.get("run_id")) or None,
                kind=_str(m.get("kind")),
                adapter=adapter if isinstance(adapter, bool) else None,
                eval_id=eval_id,
                eval_name=eval_name,
                eval_path=path,
                created=created,
                metrics=metrics,
                tokenizer=_str(m.get("tokenizer")),
                window=window if isinstance(window, int) and not isinstance(window, bool) else None,
                documents=documents
                if isinstance(documents, int) and not isinstance(documents, bool)
                else None,
                bleu_signature=_str(m.get("bleu_signature")),
                chrf_signature=_str(m.get("chrf_signature")),
            )
        )
    comparisons = []
    raw_cmp = data.get("comparisons")
    for c in raw_cmp if isinstance(raw_cmp, list) else []:
        if not isinstance(c, Mapping):
            continue
        ci = c.get("ci95")
        lo = hi = None
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = _num(ci[0]), _num(ci[1])
        comparisons.append(
            ComparisonView(
                a=_str(c.get("a")),
                b=_str(c.get("b")),
                metric=_str(c.get("metric")),
                difference=_num(c.get("difference")),
                lo=lo,
                hi=hi,
                p_value=_num(c.get("p_value")),
                verdict=_str(c.get("verdict")),
            )
        )
    settings = data.get("settings")
    return EvalResultsView(
        eval_id=eval_id,
        eval_name=eval_name,
        path=path,
        created=created,
        settings=dict(settings) if isinstance(settings, Mapping) else {},
        rows=tuple(rows),
        comparisons=tuple(comparisons),
    )


def present_metrics(rows: Iterable[ModelRow]) -> tuple[MetricSpec, ...]:
    """The table's metric columns: those at least one row has, in :data:`METRICS` order."""
    have: set[str] = set()
    for row in rows:
        have.update(row.metrics)
    return tuple(m for m in METRICS if m.key in have)


def sort_rows(rows: Sequence[ModelRow], metric: str | None, *, reverse: bool = False) -> list[ModelRow]:
    """Rows best first on ``metric`` (lower first for perplexities and bits per byte, higher first
    for the rest), worst first when ``reverse``; rows without the metric always last, in their
    original order. ``metric`` None keeps the given order (newest evaluation first)."""
    if metric is None:
        return list(rows)
    spec = METRIC_BY_KEY.get(metric)
    lower = spec.lower_better if spec else True
    have = [r for r in rows if r.get(metric) is not None]
    missing = [r for r in rows if r.get(metric) is None]
    ascending = lower != reverse
    have.sort(key=lambda r: r.metrics[metric].value, reverse=not ascending)
    return have + missing


def best_keys(rows: Sequence[ModelRow], metric: str) -> set[str]:
    """Keys of the rows holding the best value of ``metric`` (to mark it in the table)."""
    spec = METRIC_BY_KEY.get(metric)
    values = [(r.metrics[metric].value, r.key) for r in rows if metric in r.metrics]
    if len(values) < 2 or spec is None:
        return set()
    best = min(v for v, _ in values) if spec.lower_better else max(v for v, _ in values)
    return {k for v, k in values if v == best}


# ------------------------------------------------------------------------------------ eval runs
@dataclass(frozen=True)
class EvalRunState:
    """An evaluation run without results to show: live (with its latest progress) or ended."""

    id: str
    name: str
    path: str
    state: str
    live: bool
    message: str
    phase: str = ""
    done: float | None = None
    total: float | None = None
    unit: str = ""
    eta: float | None = None

    def progress_text(self) -> str:
        """``perplexity tiny-owt 12/50 docs · eta 1m05s``, or the status message."""
        from canvas_tui.fmt import fmt_duration

        if self.phase:
            done = "-" if self.done is None else f"{self.done:g}"
            part = f"{self.phase} {done}" + (f"/{self.total:g}" if self.total is not None else "")
            if self.unit:
                part += f" {self.unit}"
            if self.eta is not None:
                part += f" · eta {fmt_duration(self.eta)}"
            return part
        return self.message


@dataclass(frozen=True)
class EvalSnapshot:
    """One scan of the store: finished evaluations (newest first) and the others."""

    results: tuple[EvalResultsView, ...]
    others: tuple[EvalRunState, ...]
    errors: tuple[str, ...] = ()

    @property
    def rows(self) -> list[ModelRow]:
        return [row for view in self.results for row in view.rows]

    def view_for(self, eval_id: str) -> EvalResultsView | None:
        return next((v for v in self.results if v.eval_id == eval_id), None)

    @property
    def live(self) -> list[EvalRunState]:
        return [o for o in self.others if o.live]


class _Progress:
    def __init__(self, path: Path) -> None:
        self.reader = EventReader(path)
        self.progress: Progress | None = None
        self.message = ""

    def update(self, max_bytes: int) -> None:
        for event in self.reader.read_events(max_bytes=max_bytes):
            if isinstance(event, Progress):
                self.progress = event
            elif isinstance(event, Status):
                self.message = event.message or event.state
            elif isinstance(event, Log):
                self.message = event.message


class EvalTracker:
    """Incremental state of the store's evaluation runs; thread-safe (one scan at a time)."""

    def __init__(self, root: Path | None = None, max_bytes: int = 1 << 20) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._results: dict[str, tuple[tuple[int, int], EvalResultsView]] = {}
        self._progress: dict[str, _Progress] = {}
        self._lock = threading.Lock()

    def scan(self, cancelled: Callable[[], bool] = lambda: False) -> EvalSnapshot:
        with self._lock:
            results: list[EvalResultsView] = []
            others: list[EvalRunState] = []
            errors: list[str] = []
            runs = list(reversed(list_runs(self.root)))
            present = {run.id for run in runs}
            for gone in set(self._results) - present:
                del self._results[gone]
            for gone in set(self._progress) - present:
                del self._progress[gone]
            for run in runs:
                if cancelled():
                    break
                try:
                    meta = run.read_meta()
                except RunStoreError:
                    continue
                if str(meta.kind) != RunKind.EVAL:
                    continue
                path = run.path / RESULTS
                try:
                    st = path.stat()
                except OSError:
                    st = None
                if st is not None:
                    stamp = (st.st_size, st.st_mtime_ns)
                    cached = self._results.get(run.id)
                    if cached is not None and cached[0] == stamp:
                        results.append(cached[1])
                        continue
                    try:
                        view = parse_results(
                            load_results_json(path),
                            eval_id=run.id,
                            eval_name=meta.name or run.id,
                            path=str(run.path),
                            created=meta.created or "",
                        )
                    except (OSError, ValueError) as exc:
                        errors.append(f"{run.id}: cannot read {RESULTS}: {exc}")
                    else:
                        self._results[run.id] = (stamp, view)
                        results.append(view)
                        continue
                others.append(self._state(run, meta))
            return EvalSnapshot(tuple(results), tuple(others), tuple(errors))

    def _state(self, run: RunDir, meta: Any) -> EvalRunState:
        try:
            status = run_status(run, meta, tail=0)
            state, live, message = status.state, status.state in ("running", "starting"), status.message
        except (RunStoreError, OSError):
            state, live, message = str(meta.status), False, ""
        acc = self._progress.get(run.id)
        if acc is None:
            acc = self._progress[run.id] = _Progress(run.events_path)
        acc.update(self.max_bytes)
        p = acc.progress if live else None
        return EvalRunState(
            id=run.id,
            name=meta.name or run.id,
            path=str(run.path),
            state=state,
            live=live,
            message=acc.message or message,
            phase=p.phase if p is not None and isinstance(p.phase, str) else "",
            done=_num(p.done) if p is not None else None,
            total=_num(p.total) if p is not None else None,
            unit=p.unit if p is not None and isinstance(p.unit, str) else "",
            eta=_num(p.eta) if p is not None else None,
        )


# ------------------------------------------------------------------------------------ arena
@dataclass(frozen=True)
class RatingRow:
    model: str
    rating: float
    lo: float | None
    hi: float | None
    battles: int | None


@dataclass(frozen=True)
class ArenaView:
    """Bradley–Terry ratings (best first), or ``note`` saying why there are none."""

    rows: tuple[RatingRow, ...] = ()
    battles: int = 0
    note: str = ""


NO_BATTLES = "no battles yet: press a to open the Arena"


def arena_view(path: Path | None = None, *, n_bootstrap: int = 1000, seed: int = 0) -> ArenaView:
    """Ratings fitted on ``path`` (default: the store's ``arena/battles.jsonl``) with
    :func:`engine.eval.arena.fit_ratings` (scale 400, base 10, ties half a win, seeded bootstrap)."""
    from engine.eval import arena

    path = Path(path) if path is not None else arena.battles_path()
    if not path.is_file():
        return ArenaView(note=NO_BATTLES)
    battles = arena.read_battles(path)
    if not battles:
        return ArenaView(note=NO_BATTLES)
    data = arena.fit_ratings(battles, n_bootstrap=n_bootstrap, seed=seed).to_json()
    return ratings_from_json(data, len(battles))


def ratings_from_json(data: Mapping[str, Any], battles: int = 0) -> ArenaView:
    """``Ratings.to_json()`` (``{"ratings": {model: {"rating", "ci95", "battles"}}}``) as rows."""
    rows = []
    ratings = data.get("ratings")
    for model, r in ratings.items() if isinstance(ratings, Mapping) else ():
        if not isinstance(r, Mapping):
            continue
        rating = _num(r.get("rating"))
        if rating is None:
            continue
        ci = r.get("ci95")
        lo = hi = None
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = _num(ci[0]), _num(ci[1])
        n = r.get("battles")
        rows.append(RatingRow(str(model), rating, lo, hi, n if isinstance(n, int) else None))
    rows.sort(key=lambda r: (-r.rating, r.model))
    return ArenaView(tuple(rows), battles, "" if rows else NO_BATTLES)


def fmt_rating(row: RatingRow) -> str:
    """``1032 [1001, 1060]``."""
    if row.lo is None or row.hi is None:
        return f"{row.rating:.0f}"
    return f"{row.rating:.0f} [{row.lo:.0f}, {row.hi:.0f}]"


# ------------------------------------------------------------------------------------ samples
@dataclass(frozen=True)
class SampleView:
    index: int
    task: str
    source: str
    prompt: str
    reference: str
    outputs: dict[str, str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def score(self, label: str, metric: str) -> float | None:
        return self.scores.get(label, {}).get(metric)


def _sample(raw: Any, position: int) -> SampleView | None:
    """A samples.jsonl line (a dict) or an :class:`engine.eval.samples.Sample` (attributes)."""

    def get(name: str) -> Any:
        return raw.get(name) if isinstance(raw, Mapping) else getattr(raw, name, None)

    if not isinstance(raw, Mapping) and not hasattr(raw, "outputs"):
        return None
    outputs_raw = get("outputs")
    outputs = (
        {str(k): v for k, v in outputs_raw.items() if isinstance(v, str)}
        if isinstance(outputs_raw, Mapping)
        else {}
    )
    scores: dict[str, dict[str, float]] = {}
    scores_raw = get("scores")
    for label, per in scores_raw.items() if isinstance(scores_raw, Mapping) else ():
        if isinstance(per, Mapping):
            scores[str(label)] = {
                str(k): v for k, v in ((k, _num(x)) for k, x in per.items()) if v is not None
            }
    index = get("index")
    return SampleView(
        index=index if isinstance(index, int) and not isinstance(index, bool) else position,
        task=_str(get("task")),
        source=_str(get("source")),
        prompt=_str(get("prompt")),
        reference=_str(get("reference")),
        outputs=outputs,
        scores=scores,
    )


def read_samples(path: Path) -> list[SampleView]:
    """Every sample of a samples.jsonl, through :func:`engine.eval.samples.read_samples` (strict:
    SamplesError, a ValueError, naming a bad line)."""
    from engine.eval import samples as engine_samples

    views = (_sample(s, n) for n, s in enumerate(engine_samples.read_samples(Path(path))))
    return [v for v in views if v is not None]


def sample_labels(samples: Sequence[SampleView], preferred: Sequence[str] = ()) -> list[str]:
    """The models that wrote the samples: results.json's order first, then any others."""
    seen: list[str] = [label for label in preferred]
    for s in samples:
        for label in s.outputs:
            if label not in seen:
                seen.append(label)
    return [label for label in seen if any(label in s.outputs for s in samples)] or seen


@dataclass(frozen=True)
class SampleRow:
    sample: SampleView
    a: float | None
    b: float | None

    @property
    def difference(self) -> float | None:
        """B − A on the chosen metric."""
        return None if self.a is None or self.b is None else self.b - self.a


#: How the browser orders samples: by index, B − A largest first, B − A smallest first.
SAMPLE_SORTS = ("diff-desc", "diff-asc", "index")


def sample_rows(
    samples: Sequence[SampleView], a: str, b: str, metric: str, sort: str = "diff-desc"
) -> list[SampleRow]:
    """One row per sample with model ``a``'s and ``b``'s score on ``metric``; ordered by ``sort``
    (:data:`SAMPLE_SORTS`), samples without both scores last."""
    rows = [SampleRow(s, s.score(a, metric), s.score(b, metric)) for s in samples]
    if sort == "index":
        return sorted(rows, key=lambda r: r.sample.index)
    have = [r for r in rows if r.difference is not None]
    missing = [r for r in rows if r.difference is None]
    have.sort(key=lambda r: (r.difference if sort == "diff-asc" else -(r.difference or 0.0), r.sample.index))
    return have + missing


# ------------------------------------------------------------------------------------ launching
@dataclass(frozen=True)
class LaunchRequest:
    """What the launch form asks for. ``models``: run paths, folders or Hub ids."""

    models: tuple[str, ...]
    checkpoint: str | None = None
    data: str | None = None
    samples: int | None = None
    name: str | None = None
    with_base: bool = False


def eval_config(request: LaunchRequest) -> Any:
    """The :class:`engine.eval.launch.EvalConfig` of a request (the CLI flags' names)."""
    from engine.eval import launch

    fields: dict[str, Any] = {"models": list(request.models)}
    if request.checkpoint:
        fields["checkpoint"] = request.checkpoint
    if request.data:
        fields["data"] = request.data
    if request.samples is not None:
        fields["samples"] = request.samples
    if request.with_base:
        fields["with_base"] = True
    return launch.EvalConfig.from_dict(fields)


def preflight_eval(request: LaunchRequest) -> Any:
    """Check a request the way ``canvas eval`` does (ConfigError naming the flag; nothing created)."""
    cfg = eval_config(request)
    from engine.eval import launch

    return launch.preflight(cfg)


def start_eval(request: LaunchRequest) -> RunDir:
    """Preflight, create and launch the evaluation run detached; returns its run directory."""
    cfg = eval_config(request)
    from engine.eval import launch

    started = launch.start(cfg, request.name or None)
    return started.run
