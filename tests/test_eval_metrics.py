"""The text metrics, bootstraps, verdicts and samples file (engine.eval: torch-free).

Expected numbers come from the reference libraries' own test suites, cited per case, and from
hand computations; a wrapper that swapped the reference and the prediction, stemmed, transposed
the references wrongly or averaged a corpus metric would fail them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from engine.eval import bootstrap
from engine.eval.bootstrap import Comparison, mean_metric, ratio_metric, resample_indices, verdict
from engine.eval.samples import Sample, SamplesError, read_samples, write_samples
from engine.eval.scoring import METRIC_KEYS, paired_comparison, score_generation, score_samples

# ------------------------------------------------------------------------------ rouge-score's cases
# google-research/rouge rouge_score/rouge_scorer_test.py (rouge-score 0.1.2, shipped in the wheel).


def rouge(prediction: str, references: list[str]) -> dict[str, float]:
    return score_generation([prediction], [references], n_bootstrap=0).per_sample[0]


def test_rouge_matches_rouge_scorer_test_cases():
    # testRouge2: score("testing one two", "testing one") -> rouge2 F 2/3
    assert rouge("testing one", ["testing one two"])["rouge2"] == pytest.approx(2 / 3)
    # testRougeLConsecutive / testRougeLNonConsecutive: rougeL F 4/5
    assert rouge("testing one", ["testing one two"])["rougeL"] == pytest.approx(4 / 5)
    assert rouge("testing two", ["testing one two"])["rougeL"] == pytest.approx(4 / 5)
    # testRouge1: score("testing one two", "testing") -> rouge1 F 1/2
    assert rouge("testing", ["testing one two"])["rouge1"] == pytest.approx(1 / 2)
    # testRougeEmpty: an empty prediction scores 0 on every type
    assert rouge("", ["testing one two"]) == pytest.approx(
        {"rouge1": 0, "rouge2": 0, "rougeL": 0, "rougeLsum": 0, "chrf": 0, "bleu": 0}
    )


def test_rouge_lsum_takes_the_reference_first_and_splits_sentences_on_newlines():
    # testRougeLsum: score("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5") -> F 0.5333
    # (recall 0.8, precision 0.4). With the arguments swapped the union LCS gives 2/3 instead.
    got = rouge("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", ["w1 w2 w3 w4 w5"])["rougeLsum"]
    assert got == pytest.approx(0.5333, abs=1e-3)
    assert got != pytest.approx(2 / 3, abs=1e-3)
    # testRougeLSumSentenceSplitting (without stemming the words still match): lines are sentences,
    # so reordered sentences score 1.0 on Lsum and 0.5 on plain L.
    scores = rouge("Second sentence.\nFirst sentence.", ["First sentence.\nSecond sentence."])
    assert scores["rougeLsum"] == pytest.approx(1.0)
    assert scores["rougeL"] == pytest.approx(0.5)


def test_rouge_several_references_take_the_best_like_score_multi():
    # testRougeAllMulti: score_multi(["first text", "first something"], "text first")
    scores = rouge("text first", ["first text", "first something"])
    assert scores["rouge1"] == pytest.approx(1.0)
    assert scores["rouge2"] == pytest.approx(0.0)
    assert scores["rougeL"] == pytest.approx(0.5)


def test_rouge_does_not_stem():
    # rouge_scorer_test testRouge1AgainstRouge155(WithStemming): the stemmer changes the score;
    # here "cats"/"cat" only match with a stemmer, so without one rouge1 is 0.
    assert rouge("cats", ["cat"])["rouge1"] == 0.0


# ------------------------------------------------------------------------------ sacrebleu's cases
# mjpost/sacrebleu test/test_bleu.py (test_corpus_bleu, the README example with two references).
_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
PER_PREDICTION = [list(r) for r in zip(*_REFS, strict=True)]  # references[i]: both references of prediction i


def test_corpus_bleu_matches_sacrebleu_test_bleu_with_two_references():
    scores = score_generation(_HYPS, PER_PREDICTION, n_bootstrap=0)
    assert abs(scores.metrics["bleu"]["value"] - 48.530827) < 1e-6
    assert scores.bleu_signature.startswith("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert scores.chrf_signature.startswith("nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    assert scores.chrf_pp_signature.startswith("nrefs:2|case:mixed|eff:yes|nc:6|nw:2|space:no|version:")
    # "ensure that empty hypotheses are not removed": all empty -> 0.0
    empty = score_generation(["", "", ""], PER_PREDICTION, n_bootstrap=0)
    assert empty.metrics["bleu"]["value"] == 0.0


@pytest.mark.parametrize(
    "hyps, refs, expected",
    [
        # test/test_chrf.py test_cases_effective_order: CHRF's defaults (eps_smoothing=False)
        (["a"], ["a"], 100.0),
        (["a b c"], ["abc"], 100.0),
        (["a", "b"], ["a", "c"], 50.0),
        (["aa"], ["ab"], 25.0),
        ([""], ["reference"], 0.0),
    ],
)
def test_corpus_chrf_matches_sacrebleu_test_chrf(hyps, refs, expected):
    scores = score_generation(hyps, [[r] for r in refs], n_bootstrap=0)
    assert abs(scores.metrics["chrf"]["value"] - expected) < 1e-4


def test_chrf_and_chrf_pp_by_hand():
    # sacrebleu's CHRF (beta 2, effective-order averaging): the mean precision p and recall r over
    # the orders both texts have, F = 5pr / (4p + r). Here p = r per order, so F is their mean.
    # "ab cd" vs "ab ce", spaces removed: "abcd" vs "abce". Char orders 1-4: 3/4, 2/3, 1/2, 0
    # (orders 5 and 6 absent). chrF++ adds word orders: unigrams 1/2, bigrams 0.
    m = score_generation(["ab cd"], [["ab ce"]], n_bootstrap=0).metrics
    assert m["chrf"]["value"] == pytest.approx(100 * (3 / 4 + 2 / 3 + 1 / 2 + 0) / 4)  # 47.92
    assert m["chrf_pp"]["value"] == pytest.approx(100 * (3 / 4 + 2 / 3 + 1 / 2 + 0 + 1 / 2 + 0) / 6)  # 40.28


def test_corpus_bleu_is_not_the_mean_of_sentence_bleu():
    scores = score_generation(_HYPS, PER_PREDICTION, n_bootstrap=0)
    mean_sentence = sum(row["bleu"] for row in scores.per_sample) / len(_HYPS)
    assert abs(mean_sentence - scores.metrics["bleu"]["value"]) > 0.5  # 47.96 against 48.53
    assert scores.per_sample[0]["bleu"] == pytest.approx(100.0)  # identical to its first reference


def test_score_generation_refuses_bad_input():
    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        score_generation(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no predictions"):
        score_generation([], [])


# ------------------------------------------------------------------------------ bootstraps
def test_mean_metric_is_the_mean_with_percentiles_of_seeded_resampled_means():
    values = [0.1, 0.4, 0.35, 0.8, 0.05, 0.6, 0.2]
    got = mean_metric(values, seed=3, n_bootstrap=500)
    assert got["value"] == pytest.approx(sum(values) / len(values))
    # By hand: the same draws (numpy's default_rng(3).choice), each draw's mean, 2.5/97.5 percentiles.
    rng = np.random.default_rng(3)
    idx = rng.choice(len(values), size=(500, len(values)), replace=True)
    means = np.asarray(values)[idx].mean(axis=1)
    assert got["ci95"] == pytest.approx([np.percentile(means, 2.5), np.percentile(means, 97.5)])
    assert got["ci95"][0] < got["value"] < got["ci95"][1]


def test_bootstrap_is_reproducible_with_a_seed_and_different_with_another():
    preds = ["the cat sat on the mat", "a dog ran", "hello world", "the end is near", "one two three"]
    refs = [["the cat sat on a mat"], ["the dog ran"], ["hello there world"], ["the end"], ["one two four"]]
    a = score_generation(preds, refs, seed=1)
    b = score_generation(preds, refs, seed=1)
    c = score_generation(preds, refs, seed=2)
    assert a.metrics == b.metrics
    assert a.metrics["rougeL"]["value"] == c.metrics["rougeL"]["value"]
    assert a.metrics["rougeL"]["ci95"] != c.metrics["rougeL"]["ci95"]
    assert a.metrics["chrf"]["ci95"] != c.metrics["chrf"]["ci95"]
    assert resample_indices(5, 3, 1).tolist() == resample_indices(5, 3, 1).tolist()


def test_corpus_metric_interval_recomputes_the_corpus_score_on_each_draw():
    from sacrebleu.metrics import CHRF

    preds = ["the cat sat on the mat", "a dog ran", "hello world", "the end is near"]
    refs = ["the cat sat on a mat", "the dog ran", "hello there world", "the end"]
    got = score_generation(preds, [[r] for r in refs], seed=5, n_bootstrap=200).metrics["chrf"]
    idx = np.random.default_rng(5).choice(4, size=(200, 4), replace=True)
    draws = [CHRF().corpus_score([preds[i] for i in row], [[refs[i] for i in row]]).score for row in idx]
    assert got["ci95"] == pytest.approx([np.percentile(draws, 2.5), np.percentile(draws, 97.5)])


def test_ratio_metric_by_hand():
    # Two documents: nll 2 over 1 token and 4 over 3 tokens -> exp(6/4). A draw of doc 0 twice is
    # exp(2), of doc 1 twice exp(4/3): the interval lies between them.
    got = ratio_metric([2.0, 4.0], [1, 3], transform=np.exp, seed=0, n_bootstrap=400)
    assert got["value"] == pytest.approx(math.exp(1.5))
    lo, hi = got["ci95"]
    assert math.exp(4 / 3) - 1e-9 <= lo <= math.exp(1.5) <= hi <= math.exp(2) + 1e-9
    assert ratio_metric([2.0], [1], transform=np.exp, seed=0)["ci95"] is None  # one item: no interval


# ------------------------------------------------------------------------------ verdicts and pairs
def test_verdict_sentences():
    assert (
        verdict("rougeL", "Model 1", "Model 2", 0.041, [0.02, 0.06])
        == "Model 2 better on ROUGE-L by 0.041, 95% CI [0.02, 0.06]"
    )
    assert (
        verdict("rougeL", "Model 1", "Model 2", -0.041, [-0.06, -0.02])
        == "Model 1 better on ROUGE-L by 0.041, 95% CI [0.02, 0.06]"
    )
    # Lower is better: a negative difference (b - a) is b's win.
    assert verdict("bits_per_byte", "A", "B", -0.12, [-0.2, -0.05]) == (
        "B better on bits per byte by 0.12 (lower is better), 95% CI [0.05, 0.2]"
    )
    assert verdict("bleu", "A", "B", 1.5, [-0.4, 3.1]) == (
        "no clear difference on BLEU: B − A = 1.5, 95% CI [-0.4, 3.1]"
    )


def test_paired_rouge_difference_by_hand():
    refs = [["a b c d"], ["e f g h"], ["i j k l"], ["m n o p"]]
    a = score_generation(
        ["a x y z", "e x y z", "i x y z", "m x y z"], refs, n_bootstrap=0
    )  # rouge1 0.25 each
    b = score_generation(["a b y z", "e f y z", "i j y z", "m n y z"], refs, n_bootstrap=0)  # rouge1 0.5 each
    c = paired_comparison(a, b, "rouge1", labels=("small", "big"), seed=0, n_bootstrap=200)
    assert c.difference == pytest.approx(0.25)
    assert c.ci95 == pytest.approx([0.25, 0.25])  # the same margin on every sample: no spread
    assert c.verdict == "big better on ROUGE-1 by 0.25, 95% CI [0.25, 0.25]"
    assert Comparison.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_paired_bleu_p_value_is_sacrebleus_paired_bootstrap(monkeypatch):
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    rng = np.random.default_rng(0)
    words = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "rug", "quickly", "slowly"]
    refs = [" ".join(rng.choice(words, 8)) for _ in range(30)]
    hyp_a = [" ".join(r.split()[:5] + list(rng.choice(words, 3))) for r in refs]
    hyp_b = [" ".join(r.split()[:7] + list(rng.choice(words, 1))) for r in refs]
    a = score_generation(hyp_a, [[r] for r in refs], n_bootstrap=0)
    b = score_generation(hyp_b, [[r] for r in refs], n_bootstrap=0)
    c = paired_comparison(a, b, "bleu", seed=7, n_bootstrap=300)
    # sacrebleu's own PairedTest (test_type="bs") with the same seed gives the same p-value.
    monkeypatch.setenv("SACREBLEU_SEED", "7")
    _, results = PairedTest(
        [("a", hyp_a), ("b", hyp_b)], {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=300
    )()
    assert c.p_value == pytest.approx(results["BLEU"][1].p_value)
    assert c.difference == pytest.approx(b.metrics["bleu"]["value"] - a.metrics["bleu"]["value"])
    assert c.difference > 0 and c.ci95[0] > 0
    assert c.verdict.startswith("Model 2 better on BLEU by ")


def test_paired_comparison_refuses_different_samples():
    a = score_generation(["x", "y"], [["x"], ["y"]], n_bootstrap=0)
    b = score_generation(["x", "y"], [["x"], ["z"]], n_bootstrap=0)
    with pytest.raises(ValueError, match="same samples"):
        paired_comparison(a, b, "bleu")


# ------------------------------------------------------------------------------ samples.jsonl
def test_samples_round_trip_and_rescoring(tmp_path):
    samples = [
        Sample(i, "generation", "val", f"prompt {i} [/INST]", ref, {"m1": out, "m2": ref})
        for i, (out, ref) in enumerate([("a cat", "a cat sat"), ("dog ran", "the dog ran"), ("x", "y z")])
    ]
    scores = score_samples(samples, "m1", seed=4, n_bootstrap=100)
    for s, row in zip(samples, scores.per_sample, strict=True):
        s.scores["m1"] = row
    path = tmp_path / "samples.jsonl"
    write_samples(path, samples)
    assert [p.name for p in tmp_path.iterdir()] == ["samples.jsonl"]  # no temporary file left
    back = read_samples(path)
    assert back == samples
    assert score_samples(back, "m1", seed=4, n_bootstrap=100).metrics == scores.metrics
    assert score_samples(back, "m2", seed=4, n_bootstrap=100).metrics["rouge1"]["value"] == 1.0


def test_read_samples_names_the_bad_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    good = json.dumps(Sample(0, "reply", "", "p", "r", {"m": "o"}).to_json())
    path.write_text(good + "\n" + '{"index": 1}\n')
    with pytest.raises(
        SamplesError, match=r"line 2: not a sample \(missing task, prompt, reference, outputs\)"
    ):
        read_samples(path)
    with pytest.raises(SamplesError, match="no samples file"):
        read_samples(tmp_path / "missing.jsonl")


def test_the_torch_free_modules_stay_torch_free():
    code = (
        "import sys\n"
        "import engine.eval.scoring, engine.eval.bootstrap, engine.eval.samples, engine.eval.text_metrics\n"
        "import engine.eval.perplexity\n"
        "from engine.eval.perplexity import perplexity_from\n"
        "perplexity_from([-1.0, -2.0], [1, 2], [1, 1], [3, 3], seed=0)\n"
        "bad = [m for m in ('torch', 'transformers', 'textual') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_metric_keys_are_the_shared_shape():
    assert METRIC_KEYS == ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "chrf_pp")
    assert bootstrap.metric(1, (0, 2)) == {"value": 1.0, "ci95": [0.0, 2.0]}
