"""Seeded bootstrap intervals, paired differences and the plain verdict sentence. Torch-free.

One resampling scheme everywhere, sacrebleu's (``sacrebleu.significance``): ``n_bootstrap`` draws
of ``n`` indices with replacement from ``numpy.random.default_rng(seed).choice``, the statistic
recomputed on each draw, the 95% interval the 2.5th and 97.5th percentiles of the draws. A
corpus-level statistic (perplexity, BLEU) is recomputed from the summed parts of the drawn items,
never averaged over items. Two models compared on the same items use the same draws for both
(a paired bootstrap), and the p-value is computed the way sacrebleu's paired bootstrap computes
it (the Moses ``bootstrap-hypothesis-difference-significance.pl`` recipe).

A :data:`Metric` is the JSON shape every evaluation number takes: ``{"value": float, "ci95":
[lo, hi] | None}`` (None when there is nothing to resample: fewer than two items or no draws).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Metric = dict[str, Any]

#: Display names for the verdict sentence; a key not listed is shown as is.
METRIC_NAMES = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum",
    "bleu": "BLEU",
    "chrf": "chrF",
    "chrf_pp": "chrF++",
    "perplexity": "perplexity",
    "word_perplexity": "word perplexity",
    "byte_perplexity": "byte perplexity",
    "bits_per_byte": "bits per byte",
    "reply_perplexity": "reply perplexity",
}

#: Metrics where a smaller number is the better model.
LOWER_IS_BETTER = frozenset(
    {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "reply_perplexity"}
)


def metric(value: float, ci95: Sequence[float] | None) -> Metric:
    """The JSON shape of one number with its interval."""
    return {"value": float(value), "ci95": None if ci95 is None else [float(ci95[0]), float(ci95[1])]}


def resample_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """``(n_bootstrap, n)`` indices drawn with replacement, exactly as sacrebleu draws them."""
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=(n_bootstrap, n), replace=True)


def percentile_ci(samples: np.ndarray) -> list[float]:
    """The 95% percentile interval of bootstrap draws."""
    lo, hi = np.percentile(np.asarray(samples, dtype=np.float64), [2.5, 97.5])
    return [float(lo), float(hi)]


def _can_resample(n: int, n_bootstrap: int) -> bool:
    return n >= 2 and n_bootstrap > 0


def mean_metric(values: Sequence[float], *, seed: int, n_bootstrap: int = 1000) -> Metric:
    """The plain mean, with a bootstrap interval of the mean over items."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to average")
    value = float(x.mean())
    if not _can_resample(x.size, n_bootstrap):
        return metric(value, None)
    idx = resample_indices(x.size, n_bootstrap, seed)
    return metric(value, percentile_ci(x[idx].mean(axis=1)))


def ratio_metric(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    transform: Callable[[np.ndarray], np.ndarray] = lambda r: r,
    seed: int,
    n_bootstrap: int = 1000,
) -> Metric:
    """``transform(Σ numerators / Σ denominators)`` with a bootstrap interval over items, each draw
    recomputing the totals of the drawn items (perplexity = ``exp(Σ nll / Σ tokens)``)."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.shape != den.shape or num.size == 0:
        raise ValueError(f"need as many numerators as denominators, at least one ({num.size}, {den.size})")
    if den.sum() <= 0:
        raise ValueError("the denominators sum to zero (no tokens, words or bytes)")
    value = float(transform(np.asarray(num.sum() / den.sum())))
    if not _can_resample(num.size, n_bootstrap):
        return metric(value, None)
    idx = resample_indices(num.size, n_bootstrap, seed)
    totals = np.maximum(den[idx].sum(axis=1), np.finfo(np.float64).tiny)  # a draw of empty items only
    return metric(value, percentile_ci(transform(num[idx].sum(axis=1) / totals)))


# ------------------------------------------------------------------------------ comparisons
@dataclass(frozen=True)
class Comparison:
    """Model ``b`` against model ``a`` on one metric: ``difference = b - a`` with its paired 95%
    interval, a p-value (sacrebleu's paired-bootstrap recipe) and a plain verdict sentence."""

    metric: str
    a: str
    b: str
    difference: float
    ci95: list[float] | None
    p_value: float | None
    verdict: str

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
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        ci = data.get("ci95")
        p = data.get("p_value")
        return cls(
            metric=str(data["metric"]),
            a=str(data["a"]),
            b=str(data["b"]),
            difference=float(data["difference"]),
            ci95=None if ci is None else [float(ci[0]), float(ci[1])],
            p_value=None if p is None else float(p),
            verdict=str(data.get("verdict", "")),
        )


def fmt_number(x: float) -> str:
    """Three significant digits, trailing zeros dropped, no exponent: 0.041, 12.3, 0.5, 20."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def verdict(metric_key: str, a: str, b: str, difference: float, ci95: Sequence[float] | None) -> str:
    """The plain sentence: "Model 2 better on ROUGE-L by 0.041, 95% CI [0.02, 0.06]", or "no clear
    difference on …" when the interval includes 0 (or there is none)."""
    name = METRIC_NAMES.get(metric_key, metric_key)
    lower = metric_key in LOWER_IS_BETTER
    if ci95 is None or ci95[0] <= 0 <= ci95[1] or difference == 0:
        interval = "" if ci95 is None else f", 95% CI [{fmt_number(ci95[0])}, {fmt_number(ci95[1])}]"
        return f"no clear difference on {name}: {b} − {a} = {fmt_number(difference)}{interval}"
    b_wins = (difference > 0) != lower
    winner = b if b_wins else a
    # The interval of the winner's margin: the difference's interval, flipped when it is negative.
    lo, hi = (ci95[0], ci95[1]) if difference > 0 else (-ci95[1], -ci95[0])
    note = " (lower is better)" if lower else ""
    return (
        f"{winner} better on {name} by {fmt_number(abs(difference))}{note}, "
        f"95% CI [{fmt_number(lo)}, {fmt_number(hi)}]"
    )


def sacrebleu_p_value(samples_a: np.ndarray, samples_b: np.ndarray, observed_difference: float) -> float:
    """The p-value of sacrebleu's ``_paired_bs_test``: draws' absolute differences centred on their
    mean, the share (+1 smoothed) at least as far out as the observed absolute difference."""
    diffs = np.abs(np.asarray(samples_b, dtype=np.float64) - np.asarray(samples_a, dtype=np.float64))
    stats = diffs - diffs.mean()
    return float((np.sum(stats > abs(observed_difference)) + 1) / (len(stats) + 1))


def compare_draws(
    metric_key: str,
    a: str,
    b: str,
    value_a: float,
    value_b: float,
    draws_a: np.ndarray | None,
    draws_b: np.ndarray | None,
    *,
    p_value: float | None = None,
) -> Comparison:
    """A :class:`Comparison` from each model's value and its statistic on the same draws."""
    difference = float(value_b - value_a)
    if draws_a is None or draws_b is None:
        return Comparison(
            metric_key, a, b, difference, None, None, verdict(metric_key, a, b, difference, None)
        )
    ci = percentile_ci(np.asarray(draws_b) - np.asarray(draws_a))
    if p_value is None:
        p_value = sacrebleu_p_value(draws_a, draws_b, difference)
    return Comparison(metric_key, a, b, difference, ci, p_value, verdict(metric_key, a, b, difference, ci))


def paired_mean_difference(
    metric_key: str,
    values_a: Sequence[float],
    values_b: Sequence[float],
    *,
    labels: tuple[str, str] = ("Model 1", "Model 2"),
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> Comparison:
    """Mean of ``b`` minus mean of ``a`` over the same items (ROUGE), paired bootstrap interval."""
    xa = np.asarray(values_a, dtype=np.float64)
    xb = np.asarray(values_b, dtype=np.float64)
    if xa.shape != xb.shape or xa.size == 0:
        raise ValueError(
            f"a paired comparison needs the same items for both models ({xa.size} and {xb.size} values)"
        )
    draws_a = draws_b = None
    if _can_resample(xa.size, n_bootstrap):
        idx = resample_indices(xa.size, n_bootstrap, seed)
        draws_a, draws_b = xa[idx].mean(axis=1), xb[idx].mean(axis=1)
    return compare_draws(metric_key, *labels, float(xa.mean()), float(xb.mean()), draws_a, draws_b)


def paired_ratio_difference(
    metric_key: str,
    numerators_a: Sequence[float],
    denominators_a: Sequence[float],
    numerators_b: Sequence[float],
    denominators_b: Sequence[float],
    *,
    transform: Callable[[np.ndarray], np.ndarray] = lambda r: r,
    labels: tuple[str, str] = ("Model 1", "Model 2"),
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> Comparison:
    """``transform(Σnum/Σden)`` of ``b`` minus that of ``a`` over the same documents (bits per
    byte: nll / bytes / ln 2), each draw recomputing both models' totals on the same documents."""
    na, da, nb, db = (
        np.asarray(v, dtype=np.float64) for v in (numerators_a, denominators_a, numerators_b, denominators_b)
    )
    if not (na.shape == da.shape == nb.shape == db.shape) or na.size == 0:
        raise ValueError("a paired comparison needs the same documents for both models")

    def stat(num: np.ndarray, den: np.ndarray) -> Any:
        return transform(num.sum(axis=-1) / np.maximum(den.sum(axis=-1), np.finfo(np.float64).tiny))

    draws_a = draws_b = None
    if _can_resample(na.size, n_bootstrap):
        idx = resample_indices(na.size, n_bootstrap, seed)
        draws_a, draws_b = stat(na[idx], da[idx]), stat(nb[idx], db[idx])
    return compare_draws(metric_key, *labels, float(stat(na, da)), float(stat(nb, db)), draws_a, draws_b)
