"""Evaluation: perplexity the way lm-evaluation-harness computes it, ROUGE / BLEU / chrF through
rouge-score and sacrebleu, seeded bootstrap intervals and paired comparisons, eval runs, the arena.

Import the submodules directly; this package imports nothing, so the torch-free ones
(``text_metrics``, ``scoring``, ``bootstrap``, ``samples``, ``results``, ``arena``) stay torch-free.
"""
