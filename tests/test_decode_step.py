"""The flat single-token decode step: bit-for-bit the model's forward (to rounding on a CPU's weight
copies), and used only where faithful."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from engine.model import SamplingParams, generate
from engine.model.generate import _left_pad
from engine.model.llama import DecodeStep, GraphedDecodeStep
from tests.helpers import random_model

PROMPTS = [[5, 17, 99, 3, 200, 41, 7], [12, 250, 9], [77, 1, 2, 3, 4]]


@pytest.fixture(scope="module")
def model():
    return random_model(seed=11)


class _Spy:
    """Counts the flat steps taken, to prove which path a generation went through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        call = DecodeStep.__call__

        def counted(step: DecodeStep, tokens: torch.Tensor) -> torch.Tensor:
            self.steps += 1
            return call(step, tokens)

        monkeypatch.setattr(DecodeStep, "__call__", counted)


def _plain(model, prompts, params, monkeypatch):
    """The same generation through the model's own forward (the flat step switched off)."""
    with monkeypatch.context() as m:
        m.setattr(DecodeStep, "build", classmethod(lambda cls, *a, **k: None))
        return generate(model, prompts, params)


def _step_against_forward(model, prompts, steps=6, contiguous=False):
    """Logits of each decode step, from the model's forward and from the flat step."""
    with torch.inference_mode():
        tokens, keep = _left_pad(prompts, 0, torch.device("cpu"))
        batch, longest = tokens.shape
        ref_cache, flat_cache = (
            model.new_cache(batch, longest + steps),
            model.new_cache(batch, longest + steps),
        )
        model(tokens, cache=ref_cache, attention_mask=keep)
        model(tokens, cache=flat_cache, attention_mask=keep)
        keep_all = None
        if keep is not None:
            keep_all = torch.ones((batch, longest + steps), dtype=keep.dtype)
            keep_all[:, :longest] = keep
        step = DecodeStep.build(model, flat_cache, keep_all, contiguous=contiguous)
        assert step is not None
        nxt = torch.full((batch,), 3)
        pairs = []
        for _ in range(steps):
            if keep is not None:
                keep = torch.cat([keep, torch.ones((batch, 1), dtype=keep.dtype)], dim=1)
            want = model(nxt[:, None], cache=ref_cache, attention_mask=keep)[:, -1]
            got = step(nxt)
            pairs.append((got, want))
            nxt = want.float().argmax(-1)
        assert flat_cache.length == ref_cache.length
        same = torch.equal if not contiguous else lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=1e-5)
        for layer in range(model.config.n_layers):
            assert same(flat_cache.keys[layer], ref_cache.keys[layer])
            assert same(flat_cache.values[layer], ref_cache.values[layer])
        return pairs


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["batch1", "batch3-padded"])
def test_flat_step_logits_are_bit_for_bit_the_forward(model, prompts):
    pairs = _step_against_forward(model, prompts)
    assert len({int(got.argmax(-1)[0]) for got, _ in pairs}) > 1  # the steps really moved on
    for got, want in pairs:
        assert got.shape == want.shape == (len(prompts), model.config.vocab_size)
        assert torch.equal(got, want)


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["batch1", "batch3-padded"])
def test_the_cpu_step_on_weight_copies_agrees_with_the_forward_to_rounding(model, prompts):
    pairs = _step_against_forward(model, prompts, contiguous=True)
    for got, want in pairs:
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
        assert torch.equal(got.argmax(-1), want.argmax(-1))
    with torch.inference_mode():
        step = DecodeStep.build(model, model.new_cache(1, 8), contiguous=True)
    assert step is not None
    wq = step.layers[0][2]  # (in, out), its own memory laid out row by row
    assert wq.is_contiguous() and wq.shape == (model.config.dim, model.config.dim)
    assert wq.data_ptr() != model.model.layers[0].self_attn.q_proj.weight.data_ptr()
    assert step.lm_head.is_contiguous()


@pytest.mark.parametrize("limit, copies", [(256 << 20, True), (0, False)], ids=["small", "over-the-limit"])
def test_generation_on_a_cpu_copies_the_weights_only_of_a_small_model(model, monkeypatch, limit, copies):
    gen = importlib.import_module(
        "engine.model.generate"
    )  # the module; engine.model.generate is the function

    asked: list[bool] = []
    build = DecodeStep.build.__func__

    def spy(cls, *args, contiguous=False, **kwargs):
        asked.append(contiguous)
        return build(cls, *args, contiguous=contiguous, **kwargs)

    monkeypatch.setattr(gen, "CPU_WEIGHT_COPY_LIMIT", limit)
    monkeypatch.setattr(DecodeStep, "build", classmethod(spy))
    params = SamplingParams(max_new_tokens=12, temperature=0)
    tokens = generate(model, PROMPTS[:1], params)
    assert asked == [copies]
    assert tokens == _plain(model, PROMPTS[:1], params, monkeypatch)


def test_flat_step_is_exact_in_bf16_weights_too():
    bf16 = random_model(seed=3).to(torch.bfloat16)
    for got, want in _step_against_forward(bf16, PROMPTS):
        assert got.dtype == torch.bfloat16 and torch.equal(got, want)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_new_tokens=24, temperature=0),
        SamplingParams(max_new_tokens=24, temperature=0, repetition_penalty=1.5),
        SamplingParams(max_new_tokens=24, temperature=0.9, top_k=40, top_p=0.9, seed=5),
        SamplingParams(max_new_tokens=24, temperature=1.1, repetition_penalty=1.3, seed=9),
    ],
    ids=["greedy", "greedy-penalty", "sampled", "sampled-penalty"],
)
@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["batch1", "batch3"])
def test_generation_through_the_flat_step_equals_the_plain_path(model, params, prompts, monkeypatch):
    spy = _Spy(monkeypatch)
    fast = generate(model, prompts, params)
    assert spy.steps == params.max_new_tokens - 1  # the first token comes from the prefill
    assert fast == _plain(model, prompts, params, monkeypatch)
    assert spy.steps == params.max_new_tokens - 1  # the plain run took no flat step
    assert all(len(set(seq)) > 3 for seq in fast)


def test_stop_tokens_and_padding_for_finished_sequences(model, monkeypatch):
    greedy = generate(model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=0))
    stop = greedy[1][3]
    params = SamplingParams(max_new_tokens=20, temperature=0, stop_tokens=(stop,))
    fast = generate(model, PROMPTS, params)
    assert fast[1] == greedy[1][: greedy[1].index(stop) + 1]
    assert fast == _plain(model, PROMPTS, params, monkeypatch)


def test_weights_changed_between_generations_are_seen(model):
    params = SamplingParams(max_new_tokens=12, temperature=0)
    other = random_model(seed=12)
    before = generate(other, PROMPTS[:1], params)
    other.load_state_dict(model.state_dict())  # in place, as a checkpoint reload does
    assert generate(other, PROMPTS[:1], params) == generate(model, PROMPTS[:1], params) != before


class _Doubled(nn.Module):
    """A replaced projection (what an adapter wrapper looks like to the model)."""

    def __init__(self, inner: nn.Linear) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.inner(x)


def test_the_flat_step_stands_aside_where_it_would_not_be_the_forward(monkeypatch):
    params = SamplingParams(max_new_tokens=10, temperature=0)
    spy = _Spy(monkeypatch)
    plain = random_model(seed=11)
    reference = generate(plain, PROMPTS, params)
    assert spy.steps == 9

    hooked = random_model(seed=11)
    calls = []
    hooked.model.layers[0].mlp.register_forward_hook(lambda *a: calls.append(1))
    assert generate(hooked, PROMPTS, params) == reference
    assert len(calls) == 10 and spy.steps == 9  # prefill + 9 decode steps, all through the module

    wrapped = random_model(seed=11)
    wrapped.model.layers[1].self_attn.v_proj = _Doubled(wrapped.model.layers[1].self_attn.v_proj)
    assert DecodeStep.build(wrapped, wrapped.new_cache(1, 8)) is None
    changed = generate(wrapped, PROMPTS, params)
    assert changed != reference and spy.steps == 9
    with monkeypatch.context() as m:  # the wrapper is really applied at every step
        m.setattr(DecodeStep, "build", classmethod(lambda cls, *a, **k: None))
        assert generate(wrapped, PROMPTS, params) == changed

    training = random_model(seed=11).train()
    assert DecodeStep.build(training, training.new_cache(1, 8)) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert DecodeStep.build(plain, plain.new_cache(1, 8)) is None


def test_a_full_cache_is_refused(model):
    with torch.inference_mode():
        cache = model.new_cache(1, 4)
        model(torch.tensor([[1, 2, 3, 4]]), cache=cache)
        step = DecodeStep.build(model, cache)
        assert step is not None
        with pytest.raises(ValueError, match="KV cache is full"):
            step(torch.tensor([5]))


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["batch1", "batch3-padded"])
def test_the_static_shape_step_for_cuda_graphs_gives_the_same_tokens(model, prompts):
    """The CUDA-graph body (masked full-cache attention, positions in device tensors), run eagerly."""
    steps = 12
    with torch.inference_mode():
        tokens, keep = _left_pad(prompts, 0, torch.device("cpu"))
        batch, longest = tokens.shape
        outs = []
        for graphed in (False, True):
            cache = model.new_cache(batch, longest + steps)
            logits = model(tokens, cache=cache, attention_mask=keep)[:, -1]
            keep_all = None
            if keep is not None:
                keep_all = torch.ones((batch, longest + steps), dtype=keep.dtype)
                keep_all[:, :longest] = keep
            flat = DecodeStep.build(model, cache, keep_all)
            assert flat is not None
            step = GraphedDecodeStep(flat, capture=False) if graphed else flat
            picked, all_logits = [], []
            for _ in range(steps - 1):
                nxt = logits.argmax(-1)
                picked.append(nxt.tolist())
                logits = step(nxt)
                all_logits.append(logits)
            assert cache.length == longest + steps - 1
            outs.append((picked, torch.stack(all_logits), cache))
    (flat_tokens, flat_logits, flat_cache), (static_tokens, static_logits, static_cache) = outs
    assert static_tokens == flat_tokens
    assert len({tuple(t) for t in flat_tokens}) > 3
    torch.testing.assert_close(static_logits, flat_logits, atol=1e-5, rtol=1e-5)
    # Layer 0's keys and values do not depend on attention: written at the same slots, exactly.
    assert torch.equal(static_cache.keys[0], flat_cache.keys[0])
    assert torch.equal(static_cache.values[0], flat_cache.values[0])
    torch.testing.assert_close(static_cache.keys[-1], flat_cache.keys[-1], atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_generation_replays_a_graph_and_matches_the_flat_step(monkeypatch):
    gpu = random_model(seed=11).cuda()
    params = SamplingParams(max_new_tokens=20, temperature=0)
    captured = []
    init = GraphedDecodeStep.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        captured.append(self)

    monkeypatch.setattr(GraphedDecodeStep, "__init__", spy)
    graphed = generate(gpu, PROMPTS, params)
    assert len(captured) == 1 and captured[0].graph is not None and not captured[0].eager
    monkeypatch.setenv("CANVAS_CUDA_GRAPHS", "0")
    assert generate(gpu, PROMPTS, params) == graphed
    assert len(captured) == 1
