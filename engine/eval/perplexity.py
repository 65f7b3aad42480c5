"""Perplexity the way lm-evaluation-harness computes it, and the numbers derived from it.

**Rolling windows** (lm-evaluation-harness ``loglikelihood_rolling``, e.g. its ``wikitext``
task): a document's tokens (no special tokens added) are cut into windows of the model's context
by :func:`get_rolling_token_windows` and made disjoint by :func:`make_disjoint_window`, both ported
line for line from ``lm_eval/utils.py`` (EleutherAI/lm-evaluation-harness). Every token is predicted
exactly once; the first is conditioned on the prefix token (BOS, else EOS: lm-eval's
``prefix_token_id``), and each later window has at least one token of context (``context_len=1``).
The summed log-likelihood of a document is the sum over its windows.

**Log-likelihood of a (context, continuation) pair** (lm-eval ``_loglikelihood_tokens``): the
model reads ``(context + continuation)[-(max_seq_len + 1):][:-1]`` and the log-softmax at the last
``len(continuation)`` positions scores the continuation. Pairs are batched longest first and padded
on the right (a causal model's earlier positions never see the padding). The log-softmax is taken
in float32 whatever the model's dtype.

**From log-likelihoods to figures** (:func:`perplexity_from`), for documents ``d``:
token perplexity ``exp(-Σ LL_d / Σ tokens_d)``; word perplexity ``exp(-Σ LL_d / Σ words_d)`` with
``words = len(re.split(r"\\s+", doc))``; byte perplexity ``exp(-Σ LL_d / Σ bytes_d)`` with UTF-8
bytes; bits per byte ``-Σ LL_d / Σ bytes_d / ln 2`` (the figure that compares models with
different tokenizers). Each with a 95% interval from a seeded bootstrap over documents, every draw
recomputing the totals (:mod:`engine.eval.bootstrap`).

torch is imported inside the functions that run the model, so :func:`perplexity_from` and
:func:`compare_perplexity` work without it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.eval.bootstrap import Comparison, Metric, paired_ratio_difference, ratio_metric

if TYPE_CHECKING:
    import torch

LogitsFn = Callable[["torch.Tensor"], "torch.Tensor"]
ProgressFn = Callable[[int, int], None]

LN2 = math.log(2)


# --------------------------------------------------------------------------- rolling windows
# Ported from lm-evaluation-harness, lm_eval/utils.py (get_rolling_token_windows,
# make_disjoint_window), and checked against its tests/test_utils.py cases in
# tests/test_eval_perplexity.py.
def get_rolling_token_windows(
    token_list: list[int], prefix_token: int, max_seq_len: int, context_len: int
) -> Iterator[tuple[list[int], list[int]]]:
    """(input tokens, tokens to predict) windows; score only the last ``len(pred)`` logits.

    ``context_len`` (at least 1) is how much context each later window keeps; the first window
    predicts everything it holds, conditioned on ``prefix_token``."""
    assert 1 <= context_len <= max_seq_len
    if not token_list:
        return
    # +1 offset, going from input->preds
    pred_len = max_seq_len - context_len + 1
    predicted = 0

    # Special handling for first window: predict all tokens
    first_seq_len = min(max_seq_len, len(token_list))
    yield [prefix_token, *token_list[: first_seq_len - 1]], token_list[:first_seq_len]
    predicted += first_seq_len

    while predicted < len(token_list):
        window_pred_len = min(len(token_list) - predicted, pred_len)
        window_end = predicted + window_pred_len

        yield (
            token_list[window_end - max_seq_len - 1 : window_end - 1],
            token_list[window_end - window_pred_len : window_end],
        )
        predicted += window_pred_len


def make_disjoint_window(pair: tuple[list[int], list[int]]) -> tuple[list[int], list[int]]:
    """Takes output from get_rolling_token_windows and makes the context not overlap with the continuation."""
    a, b = pair
    return a[: len(a) - (len(b) - 1)], b


def rolling_windows(
    tokens: list[int], *, prefix_token: int, max_seq_len: int, context_len: int = 1
) -> list[tuple[list[int], list[int]]]:
    """The (context, continuation) pairs lm-eval scores for one document, in order."""
    return [
        make_disjoint_window(w)
        for w in get_rolling_token_windows(list(tokens), prefix_token, max_seq_len, context_len)
    ]


# --------------------------------------------------------------------------- log-likelihoods
def loglikelihood(
    logits_fn: LogitsFn,
    pairs: Sequence[tuple[list[int], list[int]]],
    *,
    max_seq_len: int,
    batch_size: int = 8,
    pad_id: int = 0,
    progress: ProgressFn | None = None,
) -> list[float]:
    """``Σ log p(continuation | context)`` (natural log) of each pair, in the order given.

    ``logits_fn(input_ids[B, T]) -> logits[B, T, V]`` runs the model (input on the CPU; the
    function moves it). A context must hold at least one token (give the BOS for "no context"); a
    continuation at most ``max_seq_len`` tokens. ``progress(done, total)`` after each batch."""
    import torch
    import torch.nn.functional as F

    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be at least 1, not {max_seq_len}")
    batch_size = max(1, int(batch_size))
    inputs: list[list[int]] = []
    continuations: list[list[int]] = []
    for i, (context, continuation) in enumerate(pairs):
        if not context:
            raise ValueError(f"pair {i} has an empty context: give at least one token (the BOS)")
        if not continuation:
            raise ValueError(f"pair {i} has an empty continuation: nothing to score")
        if len(continuation) > max_seq_len:
            raise ValueError(
                f"pair {i}: a continuation of {len(continuation)} tokens does not fit a window of "
                f"{max_seq_len}; score it with loglikelihood_rolling"
            )
        inputs.append((list(context) + list(continuation))[-(max_seq_len + 1) :][:-1])
        continuations.append(list(continuation))
    # Longest first (lm-eval's Collator): similar lengths share a batch, little padding.
    order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))
    results = [0.0] * len(inputs)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(inputs[i]) for i in chunk)
            batch = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            for row, i in enumerate(chunk):
                batch[row, : len(inputs[i])] = torch.tensor(inputs[i], dtype=torch.long)
            logits = logits_fn(batch)
            for row, i in enumerate(chunk):
                end, n = len(inputs[i]), len(continuations[i])
                target = torch.tensor(continuations[i], dtype=torch.long, device=logits.device)
                nll = F.cross_entropy(logits[row, end - n : end].float(), target, reduction="none")
                results[i] = -float(nll.double().sum())
            del logits
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
    return results


def loglikelihood_rolling(
    logits_fn: LogitsFn,
    documents: Sequence[list[int]],
    *,
    prefix_token: int,
    max_seq_len: int,
    batch_size: int = 8,
    pad_id: int = 0,
    progress: ProgressFn | None = None,
) -> list[float]:
    """The summed log-likelihood (natural log) of each tokenised document over its rolling
    windows; windows of all documents are batched together. An empty document scores 0.0."""
    pairs: list[tuple[list[int], list[int]]] = []
    owner: list[int] = []
    for d, tokens in enumerate(documents):
        for pair in rolling_windows(list(tokens), prefix_token=prefix_token, max_seq_len=max_seq_len):
            pairs.append(pair)
            owner.append(d)
    window_ll = loglikelihood(
        logits_fn, pairs, max_seq_len=max_seq_len, batch_size=batch_size, pad_id=pad_id, progress=progress
    )
    totals = [0.0] * len(documents)
    for d, ll in zip(owner, window_ll, strict=True):
        totals[d] += ll
    return totals


# --------------------------------------------------------------------------- the figures
def count_words(text: str) -> int:
    """Words as lm-eval's wikitext counts them: ``len(re.split(r"\\s+", doc))``."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass
class PerplexityResult:
    """Token, word and byte perplexity and bits per byte, each a Metric with its interval; the
    totals; and (not serialised) the per-document numbers a paired comparison needs."""

    perplexity: Metric
    word_perplexity: Metric
    byte_perplexity: Metric
    bits_per_byte: Metric
    tokens: int
    words: int
    bytes: int
    documents: int
    window: int = 0
    loglikelihoods: list[float] = field(default_factory=list, repr=False)
    doc_tokens: list[int] = field(default_factory=list, repr=False)
    doc_words: list[int] = field(default_factory=list, repr=False)
    doc_bytes: list[int] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, Metric]:
        return {
            "perplexity": self.perplexity,
            "word_perplexity": self.word_perplexity,
            "byte_perplexity": self.byte_perplexity,
            "bits_per_byte": self.bits_per_byte,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.metrics(),
            "tokens": self.tokens,
            "words": self.words,
            "bytes": self.bytes,
            "documents": self.documents,
            "window": self.window,
        }


def perplexity_from(
    loglikelihoods: Sequence[float],
    tokens: Sequence[int],
    words: Sequence[int],
    bytes_: Sequence[int],
    *,
    seed: int,
    n_bootstrap: int = 1000,
    window: int = 0,
) -> PerplexityResult:
    """The four figures from per-document summed log-likelihoods and unit counts, with seeded
    bootstrap intervals over documents (each draw: ``exp(Σ nll / Σ units)`` of the drawn ones)."""
    n = len(loglikelihoods)
    if not (n == len(tokens) == len(words) == len(bytes_)):
        raise ValueError(
            f"one count per document: {n} log-likelihoods, {len(tokens)} token, {len(words)} word "
            f"and {len(bytes_)} byte counts"
        )
    if n == 0:
        raise ValueError("no documents to compute perplexity on")
    nll = [-float(x) for x in loglikelihoods]
    kw = {"seed": seed, "n_bootstrap": n_bootstrap}
    return PerplexityResult(
        perplexity=ratio_metric(nll, tokens, transform=np.exp, **kw),
        word_perplexity=ratio_metric(nll, words, transform=np.exp, **kw),
        byte_perplexity=ratio_metric(nll, bytes_, transform=np.exp, **kw),
        bits_per_byte=ratio_metric(nll, bytes_, transform=lambda r: r / LN2, **kw),
        tokens=int(sum(tokens)),
        words=int(sum(words)),
        bytes=int(sum(bytes_)),
        documents=n,
        window=int(window),
        loglikelihoods=[float(x) for x in loglikelihoods],
        doc_tokens=[int(x) for x in tokens],
        doc_words=[int(x) for x in words],
        doc_bytes=[int(x) for x in bytes_],
    )


def compare_perplexity(
    a: PerplexityResult,
    b: PerplexityResult,
    metric_key: str = "bits_per_byte",
    *,
    labels: tuple[str, str] = ("Model 1", "Model 2"),
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> Comparison:
    """Model ``b`` against ``a`` on the same documents: a paired bootstrap over documents of the
    difference of ``metric_key`` (perplexity, word_perplexity, byte_perplexity, bits_per_byte).
    Token perplexity divides by each model's own token count (tokenizers may differ)."""
    if a.documents != b.documents or a.doc_bytes != b.doc_bytes:
        raise ValueError(
            f"a paired comparison needs the same documents ({a.documents} and {b.documents}, "
            f"{a.bytes} and {b.bytes} bytes)"
        )
    units = {
        "perplexity": (a.doc_tokens, b.doc_tokens),
        "word_perplexity": (a.doc_words, b.doc_words),
        "byte_perplexity": (a.doc_bytes, b.doc_bytes),
        "bits_per_byte": (a.doc_bytes, b.doc_bytes),
    }
    if metric_key not in units:
        raise ValueError(f"unknown perplexity metric {metric_key!r} (known: {', '.join(units)})")
    transform: Callable[[np.ndarray], np.ndarray] = (
        (lambda r: r / LN2) if metric_key == "bits_per_byte" else np.exp
    )
    den_a, den_b = units[metric_key]
    return paired_ratio_difference(
        metric_key,
        [-x for x in a.loglikelihoods],
        den_a,
        [-x for x in b.loglikelihoods],
        den_b,
        transform=transform,
        labels=labels,
        seed=seed,
        n_bootstrap=n_bootstrap,
    )
