"""``results.json`` of an evaluation run: the shapes, written atomically, read back. Torch-free.

One file per ``eval`` run, beside its ``samples.jsonl``::

    {"schema": 1,
     "settings": {"data", "samples", "tasks", "seed", "prompt_tokens", "continuation_tokens",
                  "sampling": {...}, "n_bootstrap", ...},
     "models": [{"label", "model", "checkpoint", "adapter", "run_id", "kind", "tokenizer", "window",
                 "tokens_per_s", "documents", "tokens", "bytes",
                 "metrics": {"bits_per_byte": {"value", "ci95"}, ...},
                 "bleu_signature", "chrf_signature", "source", "per_document": [...]}],
     "comparisons": [{"a", "b", "metric", "difference", "ci95", "p_value", "verdict"}]}

A metric that was not computed (its task did not run, or the model is not a fine-tune) is absent.
``per_document`` holds each perplexity document's summed log-likelihood (natural log) and its
token, word and byte counts, so every perplexity figure can be recomputed from the file.
Keys this version does not know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Version of the layout; bumped only when a key changes meaning.
RESULTS_SCHEMA = 1
RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"

#: A metric: ``{"value": float, "ci95": [lo, hi] | None}``.
Metric = dict[str, Any]

#: The metrics in the order tables show them.
PERPLEXITY_METRICS = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")
GENERATION_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "chrf_pp")
REPLY_METRICS = ("reply_perplexity",)
METRIC_ORDER = (*PERPLEXITY_METRICS, *REPLY_METRICS, *GENERATION_METRICS)
#: Lower is better for these; higher for every other metric.
LOWER_IS_BETTER = frozenset((*PERPLEXITY_METRICS, *REPLY_METRICS))


class ResultsError(ValueError):
    """results.json is missing, not JSON, or not in this layout (the message names the file)."""


def metric(value: float, ci95: Any = None) -> Metric:
    """``{"value": value, "ci95": [lo, hi] | None}`` with plain floats."""
    ci = [float(ci95[0]), float(ci95[1])] if ci95 is not None else None
    return {"value": float(value), "ci95": ci}


@dataclass
class ModelResult:
    """One evaluated model (a fine-tune evaluated ``--with-base`` gives two: adapter on and off)."""

    label: str
    model: str
    kind: str
    checkpoint: str | None = None
    adapter: bool | None = None
    run_id: str | None = None
    tokenizer: str = ""
    window: int | None = None
    tokens_per_s: float | None = None
    documents: int = 0
    tokens: int = 0
    bytes: int = 0
    metrics: dict[str, Metric] = field(default_factory=dict)
    bleu_signature: str | None = None
    chrf_signature: str | None = None
    source: str = ""
    per_document: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = (
        "label",
        "model",
        "checkpoint",
        "adapter",
        "run_id",
        "kind",
        "tokenizer",
        "window",
        "tokens_per_s",
        "documents",
        "tokens",
        "bytes",
        "metrics",
        "bleu_signature",
        "chrf_signature",
        "source",
        "per_document",
    )

    def to_json(self) -> dict[str, Any]:
        out = {key: getattr(self, key) for key in self._KEYS}
        out["metrics"] = {k: self.metrics[k] for k in _ordered(self.metrics)}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = RESULTS_FILE) -> ModelResult:
        if not isinstance(data, dict) or not isinstance(data.get("label"), str):
            raise ResultsError(f"{where}: a model entry is not an object with a 'label'.")
        values = {k: data[k] for k in cls._KEYS if k in data and data[k] is not None}
        values.setdefault("model", values["label"])
        values.setdefault("kind", "")
        if not isinstance(values.get("metrics", {}), dict):
            raise ResultsError(f"{where}: 'metrics' of {data['label']!r} is not an object.")
        result = cls(**values)
        result.checkpoint = data.get("checkpoint")
        result.adapter = data.get("adapter")
        result.run_id = data.get("run_id")
        result.extra = {k: v for k, v in data.items() if k not in cls._KEYS}
        return result

    def value(self, name: str) -> float | None:
        """The value of metric ``name``, or None when it was not computed."""
        found = self.metrics.get(name)
        return None if found is None else found.get("value")


@dataclass
class ComparisonResult:
    """Model ``b`` minus model ``a`` on ``metric``, over the same samples, with its interval."""

    a: str
    b: str
    metric: str
    difference: float
    ci95: list[float] | None = None
    p_value: float | None = None
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "metric": self.metric,
            "difference": self.difference,
            "ci95": self.ci95,
            "p_value": self.p_value,
            "verdict": self.verdict,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = RESULTS_FILE) -> ComparisonResult:
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("a", "b", "metric")):
            raise ResultsError(f"{where}: a comparison is not an object with 'a', 'b' and 'metric'.")
        return cls(
            a=data["a"],
            b=data["b"],
            metric=data["metric"],
            difference=float(data.get("difference") or 0.0),
            ci95=data.get("ci95"),
            p_value=data.get("p_value"),
            verdict=str(data.get("verdict") or ""),
        )


@dataclass
class EvalResults:
    """The whole of results.json."""

    settings: dict[str, Any] = field(default_factory=dict)
    models: list[ModelResult] = field(default_factory=list)
    comparisons: list[ComparisonResult] = field(default_factory=list)
    schema: int = RESULTS_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": self.schema,
            "settings": self.settings,
            "models": [m.to_json() for m in self.models],
            "comparisons": [c.to_json() for c in self.comparisons],
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = RESULTS_FILE) -> EvalResults:
        if not isinstance(data, dict):
            raise ResultsError(f"{where} does not hold a JSON object.")
        schema = data.get("schema", RESULTS_SCHEMA)
        if not isinstance(schema, int) or schema > RESULTS_SCHEMA:
            raise ResultsError(
                f"{where} has schema {schema!r}; this version reads schema {RESULTS_SCHEMA}. "
                "Fix: upgrade Neural Canvas to read it."
            )
        models = data.get("models") or []
        comparisons = data.get("comparisons") or []
        if not isinstance(models, list) or not isinstance(comparisons, list):
            raise ResultsError(f"{where}: 'models' and 'comparisons' must be lists.")
        known = ("schema", "settings", "models", "comparisons")
        return cls(
            settings=dict(data.get("settings") or {}),
            models=[ModelResult.from_json(m, where) for m in models],
            comparisons=[ComparisonResult.from_json(c, where) for c in comparisons],
            schema=schema,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def model(self, label: str) -> ModelResult:
        """The model entry labelled ``label`` (KeyError when there is none)."""
        for m in self.models:
            if m.label == label:
                return m
        raise KeyError(label)


def _ordered(metrics: dict[str, Metric]) -> list[str]:
    known = [k for k in METRIC_ORDER if k in metrics]
    return known + sorted(k for k in metrics if k not in METRIC_ORDER)


def _finite(value: Any) -> Any:
    """Non-finite floats (a diverged model's perplexity) as the strings "inf", "-inf", "nan":
    strict JSON readers (jq, browsers) reject the bare words."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_results(path: Path | str, results: EvalResults) -> Path:
    """Write ``results`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    path = Path(path)
    text = json.dumps(_finite(results.to_json()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_results(path: Path | str) -> EvalResults:
    """Read a results.json (or the one in a run directory); ResultsError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(
            f"{path} does not exist: the evaluation has not finished (or failed before writing it). "
            "Fix: `canvas status RUN` says where it stands."
        ) from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from None
    return EvalResults.from_json(data, str(path))
