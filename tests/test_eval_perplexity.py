"""Perplexity the way lm-evaluation-harness computes it (engine.eval.perplexity).

- The rolling windows against lm-evaluation-harness's own tests (tests/test_utils.py,
  ``test_get_rolling_token_windows_v1/v2/v6/empty``, ``test_make_disjoint_window``) and a
  hand-worked example: every token predicted exactly once, the first conditioned on the prefix.
- The batched log-likelihoods against a bigram model whose answer is known in closed form.
- Perplexity and bits per byte of a tiny real checkpoint, loaded through InferenceSession (our
  Llama fast path and the transformers path), equal exp / sums of the per-token NLLs computed
  directly with ``transformers.LlamaForCausalLM`` on ``canvas export --hf`` of the same checkpoint.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.eval.perplexity import (
    compare_perplexity,
    count_bytes,
    count_words,
    get_rolling_token_windows,
    loglikelihood,
    loglikelihood_rolling,
    make_disjoint_window,
    perplexity_from,
    rolling_windows,
)


# ------------------------------------------------------------------------------ lm-eval's cases
def test_rolling_windows_match_lm_evaluation_harness_v1():
    gold = [
        ([-100, 0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ([9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]),
        ([19, 20, 21, 22, 23, 24, 25, 26, 27, 28], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]),
        ([23, 24, 25, 26, 27, 28, 29, 30, 31, 32], [30, 31, 32, 33]),
    ]
    assert list(get_rolling_token_windows(list(range(34)), -100, 10, 1)) == gold


def test_rolling_windows_match_lm_evaluation_harness_v2_context_8():
    gold = [
        ([-100, 0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ([2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [10, 11, 12]),
        ([5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [13, 14, 15]),
        ([8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [16, 17, 18]),
        ([11, 12, 13, 14, 15, 16, 17, 18, 19, 20], [19, 20, 21]),
        ([14, 15, 16, 17, 18, 19, 20, 21, 22, 23], [22, 23, 24]),
        ([17, 18, 19, 20, 21, 22, 23, 24, 25, 26], [25, 26, 27]),
        ([20, 21, 22, 23, 24, 25, 26, 27, 28, 29], [28, 29, 30]),
        ([23, 24, 25, 26, 27, 28, 29, 30, 31, 32], [31, 32, 33]),
    ]
    assert list(get_rolling_token_windows(list(range(34)), -100, 10, 8)) == gold


def test_rolling_windows_match_lm_evaluation_harness_v6_and_empty():
    gold = [([-100, 0], [0, 1]), ([1, 2], [2, 3]), ([3, 4], [4, 5]), ([5, 6], [6, 7]), ([6, 7], [8])]
    assert list(get_rolling_token_windows(list(range(9)), -100, 2, 1)) == gold
    assert list(get_rolling_token_windows([], -100, 2, 1)) == []
    assert rolling_windows([], prefix_token=1, max_seq_len=4) == []


def test_make_disjoint_window_matches_lm_evaluation_harness():
    assert make_disjoint_window(([1, 2, 3, 4, 5], [2, 3, 4, 5, 6])) == ([1], [2, 3, 4, 5, 6])
    assert make_disjoint_window(([1, 2, 3, 4, 5], [4, 5, 6])) == ([1, 2, 3], [4, 5, 6])
    assert make_disjoint_window(([1, 2, 3, 4, 5], [6])) == ([1, 2, 3, 4, 5], [6])


def test_rolling_windows_hand_worked():
    # Seven tokens, window 3, prefix 1. By hand:
    #   window 1: input [1, 10, 11] predicts [10, 11, 12]; disjoint: context [1]
    #   window 2: input [12, 13, 14] predicts [13, 14, 15]; disjoint: context [12]
    #   window 3: input [13, 14, 15] predicts [16]; disjoint: context [13, 14, 15]
    tokens = [10, 11, 12, 13, 14, 15, 16]
    windows = rolling_windows(tokens, prefix_token=1, max_seq_len=3)
    assert windows == [([1], [10, 11, 12]), ([12], [13, 14, 15]), ([13, 14, 15], [16])]
    predicted = [t for _, cont in windows for t in cont]
    assert predicted == tokens  # every token exactly once, in order
    assert windows[0][0] == [1]  # the first token is conditioned on the prefix token
    for context, cont in windows:
        assert len(context) >= 1 and len(context) + len(cont) - 1 <= 3  # fits the window


# ------------------------------------------------------------------------------ a closed-form model
V = 11


def bigram_table(seed: int = 0) -> torch.Tensor:
    return torch.randn(V, V, generator=torch.Generator().manual_seed(seed)) * 2


def bigram_logits_fn(table: torch.Tensor, max_len: int, calls: list[tuple[int, int]]):
    """Logits that depend on the current token only: log p(next | prev) = log_softmax(table[prev])."""

    def fn(ids: torch.Tensor) -> torch.Tensor:
        assert ids.shape[1] <= max_len, "the model saw more than its window"
        calls.append(tuple(ids.shape))
        return table[ids]

    return fn


def bigram_ll(table: torch.Tensor, tokens: list[int], first_context: int) -> float:
    logp = torch.log_softmax(table.double(), dim=-1)
    prev, total = first_context, 0.0
    for t in tokens:
        total += float(logp[prev, t])
        prev = t
    return total


def test_loglikelihood_rolling_equals_the_bigram_chain_for_any_window_and_batch():
    table = bigram_table()
    docs = [[3, 5, 7, 2, 2, 9, 1, 4, 6, 8, 10, 0, 3], [4], [7, 7, 7, 1], []]
    expected = [bigram_ll(table, d, first_context=1) if d else 0.0 for d in docs]
    for window, batch in ((2, 1), (3, 2), (5, 8), (64, 3)):
        calls: list[tuple[int, int]] = []
        got = loglikelihood_rolling(
            bigram_logits_fn(table, window, calls), docs, prefix_token=1, max_seq_len=window, batch_size=batch
        )
        assert got == pytest.approx(expected, abs=1e-5), (window, batch)
        assert all(b <= batch for b, _ in calls)
    # A wrong prefix token changes the first prediction: the prefix is really used.
    wrong = loglikelihood_rolling(bigram_logits_fn(table, 8, []), docs[:1], prefix_token=2, max_seq_len=8)
    assert wrong[0] != pytest.approx(expected[0], abs=1e-5)


def test_loglikelihood_of_pairs_truncates_the_context_like_lm_eval():
    table = bigram_table(1)
    calls: list[tuple[int, int]] = []
    pairs = [([1, 2, 3, 4, 5, 6], [7, 8]), ([9], [10]), ([2, 2], [3, 4, 5])]
    got = loglikelihood(bigram_logits_fn(table, 4, calls), pairs, max_seq_len=4, batch_size=2)
    # A bigram model only needs the last context token, which the truncation keeps.
    expected = [bigram_ll(table, cont, ctx[-1]) for ctx, cont in pairs]
    assert got == pytest.approx(expected, abs=1e-5)
    assert calls == [(2, 4), (1, 1)]  # longest first, right-padded to the longest in the batch
    with pytest.raises(ValueError, match="empty context"):
        loglikelihood(bigram_logits_fn(table, 4, []), [([], [1])], max_seq_len=4)
    with pytest.raises(ValueError, match="does not fit a window of 4"):
        loglikelihood(bigram_logits_fn(table, 4, []), [([1], [1, 2, 3, 4, 5])], max_seq_len=4)


# ------------------------------------------------------------------------------ the figures
def test_perplexity_from_by_hand():
    docs = ["one two", "three  four five\n"]
    lls = [-3.0, -9.0]
    tokens, words, bytes_ = [2, 4], [count_words(d) for d in docs], [count_bytes(d) for d in docs]
    assert words == [2, 4]  # re.split(r"\s+"): the trailing newline leaves an empty last piece
    assert bytes_ == [7, 17]
    r = perplexity_from(lls, tokens, words, bytes_, seed=0, n_bootstrap=200, window=64)
    assert r.perplexity["value"] == pytest.approx(math.exp(12 / 6))
    assert r.word_perplexity["value"] == pytest.approx(math.exp(12 / 6))
    assert r.byte_perplexity["value"] == pytest.approx(math.exp(12 / 24))
    assert r.bits_per_byte["value"] == pytest.approx(12 / 24 / math.log(2))
    assert (r.tokens, r.words, r.bytes, r.documents, r.window) == (6, 6, 24, 2, 64)
    # The interval of each draw's exp(Σ nll / Σ units): doc 1 alone 9/4, doc 2 alone 3/2... by hand:
    idx = np.random.default_rng(0).choice(2, size=(200, 2), replace=True)
    nll, tok = np.array([3.0, 9.0]), np.array([2, 4])
    draws = np.exp(nll[idx].sum(1) / tok[idx].sum(1))
    assert r.perplexity["ci95"] == pytest.approx([np.percentile(draws, 2.5), np.percentile(draws, 97.5)])
    assert set(r.to_json()) >= {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "window"}


def test_perplexity_bootstrap_is_seeded():
    rng = np.random.default_rng(1)
    lls = list(-rng.uniform(10, 50, 20))
    tokens = list(rng.integers(5, 20, 20))
    a = perplexity_from(lls, tokens, tokens, tokens, seed=3)
    b = perplexity_from(lls, tokens, tokens, tokens, seed=3)
    c = perplexity_from(lls, tokens, tokens, tokens, seed=4)
    assert a.bits_per_byte == b.bits_per_byte
    assert a.bits_per_byte["ci95"] != c.bits_per_byte["ci95"]
    assert a.bits_per_byte["ci95"][0] < a.bits_per_byte["value"] < a.bits_per_byte["ci95"][1]


def test_compare_perplexity_on_the_same_documents():
    bytes_ = [100, 120, 80, 90, 110]
    a = perplexity_from([-70.0, -80, -60, -65, -75], [30] * 5, [20] * 5, bytes_, seed=0)
    b = perplexity_from([-50.0, -62, -41, -44, -58], [25] * 5, [20] * 5, bytes_, seed=0)
    c = compare_perplexity(a, b, "bits_per_byte", labels=("base", "tuned"), seed=0, n_bootstrap=300)
    assert c.difference == pytest.approx(b.bits_per_byte["value"] - a.bits_per_byte["value"])
    assert c.ci95[1] < 0
    assert c.verdict.startswith("tuned better on bits per byte by ") and "(lower is better)" in c.verdict
    other = perplexity_from([-1.0] * 4, [1] * 4, [1] * 4, [1] * 4, seed=0)
    with pytest.raises(ValueError, match="same documents"):
        compare_perplexity(a, other)


# ------------------------------------------------------------------------------ a real checkpoint
DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b): return a + b. Lists, dicts and sets hold values; loops walk over them. " * 3,
    "A chat model answers questions about Python — naïve café.",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """A tiny pre-training run (tests/chat_fixtures.py) and its `canvas export --hf` folder."""
    import os

    from canvas_tui.cli import main
    from tests.chat_fixtures import tiny_pretrain_run

    home = tmp_path_factory.mktemp("ppl-home")
    old = os.environ.get("CANVAS_HOME")
    os.environ["CANVAS_HOME"] = str(home)
    try:
        run = tiny_pretrain_run("ppl-src", seed=3)
        out = tmp_path_factory.mktemp("ppl-export") / "hf"
        assert main(["export", run.id, "--hf", str(out), "--checkpoint", "10"]) == 0
        yield run, out
    finally:
        if old is None:
            os.environ.pop("CANVAS_HOME", None)
        else:
            os.environ["CANVAS_HOME"] = old


def load_session(target: str):
    from engine.serve import protocol
    from engine.serve.session import InferenceSession

    s = InferenceSession()
    s.load(protocol.Load(id="l", model=target, device="cpu", dtype="float32"))
    return s


def transformers_nlls(folder, docs: list[str], window: int) -> tuple[list[list[float]], list[list[int]]]:
    """Per-token NLLs straight from LlamaForCausalLM on the export, window by window."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    bos = tok.bos_token_id
    all_nll, all_ids = [], []
    for doc in docs:
        ids = tok(doc, add_special_tokens=False)["input_ids"]
        nll: list[float] = []
        for context, cont in rolling_windows(ids, prefix_token=bos, max_seq_len=window):
            inp = (context + cont)[:-1]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([inp])).logits[0].double(), dim=-1)
            for k, t in enumerate(cont):
                nll.append(-float(logp[len(inp) - len(cont) + k, t]))
        assert len(nll) == len(ids)
        all_nll.append(nll)
        all_ids.append(ids)
    return all_nll, all_ids


@pytest.mark.parametrize("window", [4096, 16])
def test_perplexity_equals_transformers_nlls_on_the_export(exported, window):
    run, folder = exported
    session = load_session(str(run.path))
    assert session.backend == "engine"
    assert session.max_seq_len == 4096
    assert session.prefix_token == session.bos_id is not None
    docs_ids = [session.encode(d) for d in DOCS]
    nlls, hf_ids = transformers_nlls(folder, DOCS, window)
    assert docs_ids == hf_ids  # same tokens on both sides
    lls = loglikelihood_rolling(
        session.logits_fn(), docs_ids, prefix_token=session.prefix_token, max_seq_len=window, batch_size=2
    )
    for ll, nll in zip(lls, nlls, strict=True):
        assert ll == pytest.approx(-sum(nll), rel=1e-5)
    r = perplexity_from(
        lls,
        [len(i) for i in docs_ids],
        [count_words(d) for d in DOCS],
        [count_bytes(d) for d in DOCS],
        seed=0,
    )
    total_nll = sum(sum(n) for n in nlls)
    n_tokens = sum(len(n) for n in nlls)
    n_bytes = sum(len(d.encode("utf-8")) for d in DOCS)
    assert r.perplexity["value"] == pytest.approx(math.exp(total_nll / n_tokens), rel=1e-5)
    assert r.bits_per_byte["value"] == pytest.approx(total_nll / n_bytes / math.log(2), rel=1e-5)
    assert r.byte_perplexity["value"] == pytest.approx(math.exp(total_nll / n_bytes), rel=1e-5)
    session.close()


def test_the_transformers_path_scores_the_same_weights(exported, monkeypatch):
    from engine.serve import session as session_mod

    _, folder = exported
    ours = load_session(str(folder))
    assert ours.backend == "engine"
    monkeypatch.setattr(session_mod, "_is_llama", lambda source: False)  # force AutoModelForCausalLM
    theirs = load_session(str(folder))
    assert theirs.backend == "transformers"
    assert theirs.prefix_token == ours.prefix_token and theirs.max_seq_len == ours.max_seq_len
    docs = [ours.encode(d) for d in DOCS]
    kw = dict(prefix_token=ours.prefix_token, max_seq_len=32, batch_size=3)
    a = loglikelihood_rolling(ours.logits_fn(), docs, **kw)
    b = loglikelihood_rolling(theirs.logits_fn(), docs, **kw)
    assert a == pytest.approx(b, rel=1e-5)
    assert all(x < 0 for x in a)
