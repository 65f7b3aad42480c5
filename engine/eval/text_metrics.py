"""ROUGE, BLEU, chrF and chrF++ through the reference libraries themselves. Torch-free.

- ROUGE-1/2/L/Lsum F-measure from ``rouge_score.rouge_scorer.RougeScorer(use_stemmer=False)``
  called ``score(reference, prediction)``: the reference comes first (the order matters for
  ROUGE-Lsum). Several references: ``score_multi`` (the best F-measure over them), as the
  ``evaluate`` package does. ROUGE-Lsum treats each line of a text as a sentence, which is what
  rouge-score does by default (``split_summaries=False``); texts are passed as they are.
- BLEU (``sacrebleu.metrics.BLEU()``), chrF (``CHRF()``) and chrF++ (``CHRF(word_order=2)``) at
  corpus level, default settings, with their signature strings; sentence-level BLEU (effective
  order, as sacrebleu recommends) and chrF per sample for the sample browser.

Why not ``evaluate``: its loader fetches the metric scripts from the Hub (it fails offline), and
its ``bleu`` is tensorflow/nmt's ``compute_bleu``, not sacrebleu.

Per-sample statistics for the bootstraps come from the metric objects' own
``_extract_corpus_statistics`` / ``_compute_score_from_stats``: what sacrebleu's significance
module (``sacrebleu.significance``) itself resamples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
CORPUS_KEYS = ("bleu", "chrf", "chrf_pp")


def check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """ValueError naming what is wrong: counts, empty input, a sample without a reference."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} reference lists: give one list of "
            "references per prediction"
        )
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(f"references[{i}] is a string; give a list of reference strings per prediction")
        if not any(r is not None for r in refs):
            raise ValueError(f"prediction {i} has no reference")


def rouge_per_sample(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> list[dict[str, float]]:
    """ROUGE-1/2/L/Lsum F-measure (0..1) of each prediction against its reference(s)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=False)
    out = []
    for pred, refs in zip(predictions, references, strict=True):
        refs = [r for r in refs if r is not None]
        scores = scorer.score(refs[0], pred) if len(refs) == 1 else scorer.score_multi(refs, pred)
        out.append({key: float(scores[key].fmeasure) for key in ROUGE_KEYS})
    return out


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: one stream per reference position (``refs[k][i]`` is the k-th
    reference of prediction i); a prediction with fewer references gets None, which sacrebleu skips."""
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def corpus_metric(key: str) -> Any:
    """A fresh sacrebleu metric object for ``bleu``, ``chrf`` or ``chrf_pp`` (default settings)."""
    from sacrebleu.metrics import BLEU, CHRF

    if key == "bleu":
        return BLEU()
    if key == "chrf":
        return CHRF()
    if key == "chrf_pp":
        return CHRF(word_order=2)
    raise ValueError(f"unknown corpus metric {key!r} (known: {', '.join(CORPUS_KEYS)})")


class CorpusScore:
    """One corpus metric on one system: the score, the signature, and per-sample sufficient
    statistics so a bootstrap draw can recompute the corpus score."""

    def __init__(self, key: str, predictions: Sequence[str], streams: list[list[str | None]]) -> None:
        self.key = key
        self.metric = corpus_metric(key)
        self.score = float(self.metric.corpus_score(list(predictions), streams).score)
        self.signature = str(self.metric.get_signature())
        # The same statistics sacrebleu.significance resamples (its paired bootstrap).
        self.stats = np.asarray(
            self.metric._extract_corpus_statistics(list(predictions), streams), dtype=np.float64
        )

    def score_of(self, summed_stats: np.ndarray) -> float:
        return float(self.metric._compute_score_from_stats(list(summed_stats)).score)

    def draws(self, idx: np.ndarray) -> np.ndarray:
        """The corpus score recomputed on each row of drawn indices."""
        return np.array([self.score_of(row) for row in self.stats[idx].sum(axis=1)])


def sentence_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> list[dict[str, float]]:
    """Sentence-level BLEU (effective order) and chrF (0..100) of each prediction."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(effective_order=True), CHRF()
    out = []
    for pred, refs in zip(predictions, references, strict=True):
        refs = [r for r in refs if r is not None]
        out.append(
            {
                "chrf": float(chrf.sentence_score(pred, refs).score),
                "bleu": float(bleu.sentence_score(pred, refs).score),
            }
        )
    return out
