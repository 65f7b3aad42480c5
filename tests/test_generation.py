"""KV-cache generation: equal to the cache-less reference and to transformers' generate."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.config import ConfigError
from engine.model import SamplingParams, export_hf, generate, stream, stream_text_tokens
from engine.model.generate import process_logits
from tests.helpers import random_model

PROMPTS = [[5, 17, 99, 3, 200, 41, 7], [12, 250, 9], [77, 1, 2, 3, 4]]


@pytest.fixture(scope="module")
def model():
    return random_model(seed=11)


@pytest.fixture(scope="module")
def hf_model(model, tmp_path_factory):
    out = export_hf(model, tmp_path_factory.mktemp("export") / "hf")
    return AutoModelForCausalLM.from_pretrained(out).eval()


def test_cached_greedy_equals_uncached_greedy(model):
    params = SamplingParams(max_new_tokens=30, temperature=0)
    cached = generate(model, PROMPTS, params)
    reference = generate(model, PROMPTS, params, use_cache=False)
    assert cached == reference
    assert all(len(set(seq)) > 3 for seq in cached)  # not a degenerate constant stream


def test_batched_prompts_of_different_lengths_match_one_at_a_time(model):
    params = SamplingParams(max_new_tokens=20, temperature=0)
    batched = generate(model, PROMPTS, params)
    alone = [generate(model, [p], params)[0] for p in PROMPTS]
    assert batched == alone


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_greedy_equals_transformers_generate(model, hf_model, penalty):
    params = SamplingParams(max_new_tokens=25, temperature=0, repetition_penalty=penalty)
    for prompt in PROMPTS:
        ours = generate(model, [prompt], params)[0]
        with torch.no_grad():
            out = hf_model.generate(
                torch.tensor([prompt]),
                max_new_tokens=25,
                do_sample=False,
                repetition_penalty=penalty,
                pad_token_id=0,
            )
        assert ours == out[0, len(prompt) :].tolist()


def test_penalty_changes_the_output(model):
    plain = generate(model, PROMPTS[:1], SamplingParams(max_new_tokens=25, temperature=0))
    penalised = generate(
        model, PROMPTS[:1], SamplingParams(max_new_tokens=25, temperature=0, repetition_penalty=2.0)
    )
    assert plain != penalised


def test_logit_processing_matches_transformers_warpers():
    torch.manual_seed(0)
    logits = torch.randn(4, 300)
    ids = torch.randint(0, 300, (4, 12))
    seen = torch.zeros(4, 300, dtype=torch.bool).scatter_(1, ids, True)
    params = SamplingParams(temperature=0.7, top_k=40, top_p=0.85, repetition_penalty=1.3)
    ours = process_logits(logits, seen, params)
    theirs = logits
    for proc in (
        RepetitionPenaltyLogitsProcessor(1.3),
        TemperatureLogitsWarper(0.7),
        TopKLogitsWarper(40),
        TopPLogitsWarper(0.85),
    ):
        theirs = proc(ids, theirs)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    kept = ~torch.isinf(ours)
    assert kept.sum(-1).min() > 1 and kept.sum(-1).max() < 40  # top-p cut inside top-k
    torch.testing.assert_close(ours[kept], theirs[kept])


def test_sampling_is_reproducible_with_a_seed_and_respects_top_k_1(model):
    sampled = SamplingParams(max_new_tokens=20, temperature=1.0, top_k=50, top_p=0.95, seed=7)
    a = generate(model, PROMPTS, sampled)
    b = generate(model, PROMPTS, sampled)
    c = generate(model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=1.0, top_k=50, seed=8))
    assert a == b and a != c
    top1 = generate(model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=1.3, top_k=1, seed=1))
    assert top1 == generate(model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=0))


def test_stop_token_ends_only_its_sequence(model):
    greedy = generate(model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=0))
    stop = greedy[0][4]
    first = greedy[0].index(stop)
    out = generate(model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=0, stop_tokens=(stop,)))
    assert out[0] == greedy[0][: first + 1]  # the stop token is the last one yielded
    for got, full in zip(out[1:], greedy[1:], strict=True):
        expected = full[: full.index(stop) + 1] if stop in full else full
        assert got == expected


def test_streaming_yields_one_token_at_a_time(model):
    params = SamplingParams(max_new_tokens=12, temperature=0)
    steps = list(stream(model, PROMPTS, params))
    assert len(steps) == 12 and all(len(step) == 3 for step in steps)
    assert [s[0] for s in steps] == generate(model, PROMPTS[:1], params)[0]
    tokens = stream_text_tokens(model, PROMPTS[1], params)
    assert next(tokens) == generate(model, [PROMPTS[1]], params)[0][0]


def test_generation_beyond_the_context_names_the_field(model):
    too_long = SamplingParams(max_new_tokens=model.config.max_seq_len, temperature=0)
    with pytest.raises(ConfigError) as err:
        generate(model, PROMPTS, too_long)
    assert err.value.field == "prompt length + max_new_tokens"
    assert str(model.config.max_seq_len) in str(err.value)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("top_p", {"top_p": 0}),
        ("temperature", {"temperature": -1}),
        ("top_k", {"top_k": -2}),
        ("max_new_tokens", {"max_new_tokens": 0}),
        ("repetition_penalty", {"repetition_penalty": 0}),
    ],
)
def test_bad_sampling_settings_name_their_field(model, field, kwargs):
    with pytest.raises(ConfigError) as err:
        generate(model, PROMPTS, SamplingParams(**kwargs))
    assert err.value.field == field
    assert field in str(err.value) and "Fix" in str(err.value)


@pytest.mark.slow
def test_compiled_decode_gives_the_same_tokens(model):
    """torch.compile of the decode step (about 20 s to compile on 2 CPU cores)."""
    params = SamplingParams(max_new_tokens=16, temperature=0)
    assert generate(model, PROMPTS, params, compile=True) == generate(model, PROMPTS, params)
    assert "_compiled_decode" in model.__dict__
    assert not any("_compiled_decode" in k for k in model.state_dict())


def test_prefill_in_chunks_equals_one_pass(model):
    tokens = torch.tensor([PROMPTS[0] + PROMPTS[2] + PROMPTS[1]])
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache(1, 32)
        parts = [
            model(tokens[:, :6], cache=cache),
            model(tokens[:, 6:11], cache=cache),
            model(tokens[:, 11:], cache=cache),
        ]
    assert cache.length == tokens.shape[1]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
