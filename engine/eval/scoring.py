"""Scoring generated text: every metric of a generation task, with intervals, and the paired
comparison of two models on the same samples. Torch-free.

``score_generation`` is the one function that turns predictions and references into numbers; the
eval run (``engine.eval.runner``), ``canvas score`` and ``canvas score EVAL_RUN`` all call it, so
re-scoring saved samples with the same seed reproduces the stored numbers exactly.

- ROUGE-1/2/L/Lsum (0..1, rouge-score): the mean of per-sample F-measures, with a seeded bootstrap
  interval of the mean.
- BLEU, chrF, chrF++ (0..100, sacrebleu): corpus scores, with a seeded bootstrap interval that
  recomputes the corpus score from the drawn samples' statistics (sacrebleu's own resampling).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.eval import text_metrics
from engine.eval.bootstrap import (
    Comparison,
    Metric,
    compare_draws,
    mean_metric,
    metric,
    paired_mean_difference,
    percentile_ci,
    resample_indices,
)
from engine.eval.text_metrics import CORPUS_KEYS, ROUGE_KEYS

METRIC_KEYS = ROUGE_KEYS + CORPUS_KEYS
#: The per-sample scores stored with each sample (samples.jsonl ``scores``).
PER_SAMPLE_KEYS = (*ROUGE_KEYS, "chrf", "bleu")


@dataclass
class GenerationScores:
    """The scores of one model's predictions. ``metrics`` maps each of :data:`METRIC_KEYS` to a
    :data:`~engine.eval.bootstrap.Metric`; ``per_sample`` holds :data:`PER_SAMPLE_KEYS` per sample.
    ``predictions`` and ``references`` are kept (not serialised) for paired comparisons."""

    metrics: dict[str, Metric]
    bleu_signature: str
    chrf_signature: str
    chrf_pp_signature: str
    per_sample: list[dict[str, float]]
    seed: int = 0
    n_bootstrap: int = 1000
    predictions: list[str] = field(default_factory=list, repr=False)
    references: list[list[str]] = field(default_factory=list, repr=False)

    @property
    def samples(self) -> int:
        return len(self.per_sample)

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "bleu_signature": self.bleu_signature,
            "chrf_signature": self.chrf_signature,
            "chrf_pp_signature": self.chrf_pp_signature,
            "samples": self.samples,
            "seed": self.seed,
            "n_bootstrap": self.n_bootstrap,
            "per_sample": self.per_sample,
        }


def score_generation(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> GenerationScores:
    """Score ``predictions`` against ``references`` (``references[i]``: the references of
    prediction ``i``). Deterministic for a given seed. ValueError on mismatched or empty input."""
    predictions = [str(p) for p in predictions]
    references = [
        refs if isinstance(refs, str) else [str(r) for r in refs if r is not None] for refs in references
    ]
    text_metrics.check_inputs(predictions, references)
    n = len(predictions)
    rouge = text_metrics.rouge_per_sample(predictions, references)
    sentence = text_metrics.sentence_scores(predictions, references)
    per_sample = [{**r, **s} for r, s in zip(rouge, sentence, strict=True)]
    metrics: dict[str, Metric] = {
        key: mean_metric([row[key] for row in rouge], seed=seed, n_bootstrap=n_bootstrap)
        for key in ROUGE_KEYS
    }
    streams = text_metrics.reference_streams(references)
    idx = resample_indices(n, n_bootstrap, seed) if n >= 2 and n_bootstrap > 0 else None
    signatures = {}
    for key in CORPUS_KEYS:
        corpus = text_metrics.CorpusScore(key, predictions, streams)
        signatures[key] = corpus.signature
        metrics[key] = metric(corpus.score, None if idx is None else percentile_ci(corpus.draws(idx)))
    return GenerationScores(
        metrics=metrics,
        bleu_signature=signatures["bleu"],
        chrf_signature=signatures["chrf"],
        chrf_pp_signature=signatures["chrf_pp"],
        per_sample=per_sample,
        seed=seed,
        n_bootstrap=n_bootstrap,
        predictions=predictions,
        references=[list(r) for r in references],
    )


def score_samples(
    samples: Iterable[Any], label: str, *, seed: int, n_bootstrap: int = 1000
) -> GenerationScores:
    """Score one model's outputs in saved samples (:class:`engine.eval.samples.Sample`, file
    order): every sample that has an output for ``label``, against its one reference. The eval run
    and ``canvas score EVAL_RUN`` both score through here."""
    rows = [s for s in samples if label in s.outputs]
    if not rows:
        raise ValueError(f"no sample has an output of {label!r}")
    return score_generation(
        [s.outputs[label] for s in rows], [[s.reference] for s in rows], seed=seed, n_bootstrap=n_bootstrap
    )


def paired_comparison(
    a: GenerationScores,
    b: GenerationScores,
    metric_key: str,
    *,
    labels: tuple[str, str] = ("Model 1", "Model 2"),
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> Comparison:
    """Model ``b`` against model ``a`` on ``metric_key``, on the same samples and references.

    ROUGE: a plain paired bootstrap of the difference of means. BLEU / chrF / chrF++: sacrebleu's
    paired bootstrap (``sacrebleu.significance._paired_bs_test``: the p-value, with our seed), and
    the interval of the difference from the same draws, both corpus scores recomputed per draw."""
    if metric_key not in METRIC_KEYS:
        raise ValueError(f"unknown metric {metric_key!r} (known: {', '.join(METRIC_KEYS)})")
    if a.references != b.references:
        raise ValueError(
            "a paired comparison needs both models scored on the same samples and references "
            f"({a.samples} and {b.samples} samples)"
        )
    if metric_key in ROUGE_KEYS:
        return paired_mean_difference(
            metric_key,
            [row[metric_key] for row in a.per_sample],
            [row[metric_key] for row in b.per_sample],
            labels=labels,
            seed=seed,
            n_bootstrap=n_bootstrap,
        )
    streams = text_metrics.reference_streams(a.references)
    corpus_a = text_metrics.CorpusScore(metric_key, a.predictions, streams)
    corpus_b = text_metrics.CorpusScore(metric_key, b.predictions, streams)
    n = len(a.predictions)
    if n < 2 or n_bootstrap <= 0:
        return compare_draws(metric_key, *labels, corpus_a.score, corpus_b.score, None, None)
    p_value = sacrebleu_paired_bs(corpus_a, b.predictions, streams, seed=seed, n_bootstrap=n_bootstrap)
    idx = resample_indices(n, n_bootstrap, seed)  # the draws _paired_bs_test makes with this seed
    return compare_draws(
        metric_key,
        *labels,
        corpus_a.score,
        corpus_b.score,
        corpus_a.draws(idx),
        corpus_b.draws(idx),
        p_value=p_value,
    )


def sacrebleu_paired_bs(
    baseline: text_metrics.CorpusScore,
    hypotheses: Sequence[str],
    streams: list[list[str | None]],
    *,
    seed: int,
    n_bootstrap: int,
) -> float:
    """The p-value of sacrebleu's paired bootstrap test of ``hypotheses`` against ``baseline``."""
    import numpy as np
    from sacrebleu.significance import Result, _paired_bs_test

    name = baseline.key
    info = {name: (np.asarray(baseline.stats, dtype="float32"), Result(baseline.score))}
    metric_obj = text_metrics.corpus_metric(name)
    _, results = _paired_bs_test(
        info, "b", list(hypotheses), streams, {name: metric_obj}, n_samples=n_bootstrap, seed=seed
    )
    p = results[name].p_value
    assert p is not None
    return float(p)
