"""Text generation with the preallocated KV cache: greedy or sampled, streamed token by token.

The logits pass through the same steps, in the same order, as ``transformers``' ``generate``
(repetition penalty, temperature, top-k, top-p), so the two agree token for token where they
are deterministic, which a test checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from engine.config.errors import ConfigError
from engine.model.llama import CausalLM, DecodeStep, GraphedDecodeStep

# Set to 0 to decode on a GPU without CUDA graphs (the flat step launched op by op).
CUDA_GRAPHS_ENV = "CANVAS_CUDA_GRAPHS"
#: Largest model (bytes of weights) whose CPU decode step gets (in, out) copies of its weights
#: (``DecodeStep(contiguous=True)``: faster, twice the weights' memory while it generates).
CPU_WEIGHT_COPY_LIMIT = 256 << 20


def _copy_weights_for_decode(model: CausalLM, device: torch.device) -> bool:
    """Whether the CPU decode step should use weight copies laid out for a one-row ``mm``: on a
    CPU, for a model small enough that a second copy of its weights is cheap (a chat or eval of
    a small model, where the step's speed is what a user waits for)."""
    if device.type != "cpu":
        return False
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    return size <= CPU_WEIGHT_COPY_LIMIT


@dataclass
class SamplingParams:
    """How to pick each next token. ``temperature = 0`` means greedy (argmax)."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filtering
    top_p: float = 1.0  # 1.0: no nucleus filtering
    repetition_penalty: float = 1.0  # 1.0: none; >1 discourages tokens already in the sequence
    stop_tokens: tuple[int, ...] = field(default_factory=tuple)
    seed: int | None = None

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(
                "max_new_tokens",
                f"max_new_tokens = {self.max_new_tokens} must be at "
                "least 1. Fix: ask for 1 or more new tokens.",
            )
        if self.temperature < 0:
            raise ConfigError(
                "temperature",
                f"temperature = {self.temperature} cannot be negative. "
                "Fix: use 0 for greedy decoding or a positive value such as 0.7.",
            )
        if self.top_k < 0:
            raise ConfigError(
                "top_k",
                f"top_k = {self.top_k} cannot be negative. Fix: use 0 to "
                "disable top-k, or a positive count such as 50.",
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(
                "top_p",
                f"top_p = {self.top_p} must be in (0, 1]. Fix: use 1.0 to "
                "disable nucleus sampling, or a value such as 0.9.",
            )
        if self.repetition_penalty <= 0:
            raise ConfigError(
                "repetition_penalty",
                f"repetition_penalty = {self.repetition_penalty}"
                " must be positive. Fix: use 1.0 for none, or 1.1–1.3.",
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def process_logits(logits: torch.Tensor, seen: torch.Tensor | None, params: SamplingParams) -> torch.Tensor:
    """Apply repetition penalty, temperature, top-k and top-p to (B, V) float logits."""
    if seen is not None and params.repetition_penalty != 1.0:
        penalised = torch.where(
            logits > 0, logits / params.repetition_penalty, logits * params.repetition_penalty
        )
        logits = torch.where(seen, penalised, logits)
    if params.greedy:
        return logits
    if params.temperature != 1.0:
        logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.size(-1):
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p (always keeps the first).
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= params.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    if params.greedy:
        return logits.argmax(-1)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device):
    longest = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), longest), pad_id, dtype=torch.long, device=device)
    keep = torch.zeros((len(prompts), longest), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        if p:
            tokens[i, longest - len(p) :] = torch.tensor(list(p), dtype=torch.long, device=device)
            keep[i, longest - len(p) :] = 1
    padded = bool((keep == 0).any())
    return tokens, (keep if padded else None)


def compiled_decoder(model: CausalLM) -> Callable[..., torch.Tensor]:
    """``torch.compile`` of the model for one-token decode steps, built once per model.

    Decoding is dominated by per-op dispatch, not arithmetic, at chat batch sizes; compiling the
    step fuses the elementwise work (norms, rotary, SwiGLU) and removes most of the dispatch.
    ``dynamic=True`` keeps one graph for every cache length. The first call pays the compile
    (~20 s on a CPU, seconds with a warm cache), so this is opt-in.
    """
    fn = model.__dict__.get("_compiled_decode")
    if fn is None:
        fn = torch.compile(model, dynamic=True)
        # Stored outside nn.Module's registry so it never appears in state_dict or parameters().
        object.__setattr__(model, "_compiled_decode", fn)
    return fn


@torch.inference_mode()
def stream(
    model: CausalLM,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    pad_id: int = 0,
    use_cache: bool = True,
    compile: bool = False,
) -> Iterator[list[int | None]]:
    """Yield, at each step, the new token of every sequence (``None`` once it has stopped).

    Prompts of different lengths are left-padded and masked; a sequence stops at one of
    ``params.stop_tokens`` (which is yielded, so callers can tell a stop from a length cut) or
    after ``max_new_tokens``. ``use_cache=False`` recomputes the whole prefix each step: slow,
    and kept only as the reference the cached path is tested against. ``compile=True`` runs the
    decode steps through :func:`compiled_decoder`.

    Otherwise the decode steps go through :class:`~engine.model.llama.DecodeStep`, the model's
    forward written flat for one token (bit-for-bit the same logits, far fewer dispatches), and
    on a GPU through :class:`~engine.model.llama.GraphedDecodeStep`, a CUDA graph of it
    (``CANVAS_CUDA_GRAPHS=0`` turns that off). A model the flat step cannot stand for (hooks,
    wrapped layers, autocast) decodes through its own forward.
    """
    params.validate()
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError(
            "prompt",
            "every prompt needs at least one token. Fix: start prompts with the tokenizer's BOS token.",
        )
    longest = max(len(p) for p in prompts)
    model.config.check_seq_len(longest + params.max_new_tokens, "prompt length + max_new_tokens")
    device = model.lm_head.weight.device
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)
    tokens, keep = _left_pad(prompts, pad_id, device)
    batch = tokens.shape[0]
    seen = None
    if params.repetition_penalty != 1.0:
        real = keep if keep is not None else torch.ones_like(tokens)
        seen = torch.zeros((batch, model.config.vocab_size), dtype=torch.long, device=device)
        seen = seen.scatter_add_(1, tokens, real).bool()  # padding does not count as "seen"
    stop = set(params.stop_tokens)
    done = [False] * batch

    cache = model.new_cache(batch, longest + params.max_new_tokens) if use_cache else None
    logits = model(tokens, cache=cache, attention_mask=keep)[:, -1].float()
    decode = compiled_decoder(model) if (compile and cache is not None) else model
    step = None
    if cache is not None and not compile:
        # The flat single-token step (bit-for-bit the model's forward, less dispatch). Every
        # generated token is real, so its padding mask is the prompt's followed by ones.
        keep_all = None
        if keep is not None:
            keep_all = torch.ones((batch, cache.max_len), dtype=keep.dtype, device=device)
            keep_all[:, :longest] = keep
        step = DecodeStep.build(model, cache, keep_all, contiguous=_copy_weights_for_decode(model, device))
        if step is not None and device.type == "cuda" and os.environ.get(CUDA_GRAPHS_ENV, "1") != "0":
            step = GraphedDecodeStep(step)
    sequence = tokens
    last = params.max_new_tokens - 1
    for i in range(params.max_new_tokens):
        nxt = _pick(process_logits(logits, seen, params), params, generator)
        # One host sync a step: the bookkeeping below is plain Python on this list.
        values = nxt.tolist()
        yield [None if was_done else tok for tok, was_done in zip(values, done, strict=True)]
        if i == last:  # no forward for a token nobody asks for
            return
        if stop:
            done = [was_done or tok in stop for tok, was_done in zip(values, done, strict=True)]
            if all(done):
                return
            if any(done):  # finished sequences keep stepping (batch shape), fed padding
                nxt = torch.tensor(
                    [pad_id if d else tok for tok, d in zip(values, done, strict=True)], device=device
                )
        if seen is not None:
            seen.scatter_(1, nxt.unsqueeze(1), True)
        if step is not None:
            logits = step(nxt)
            if logits.dtype != torch.float32:
                logits = logits.float()
            continue
        if keep is not None:
            keep = torch.cat([keep, torch.ones((batch, 1), dtype=keep.dtype, device=device)], dim=1)
        if cache is not None:
            logits = decode(nxt.unsqueeze(1), cache=cache, attention_mask=keep)[:, -1].float()
        else:
            sequence = torch.cat([sequence, nxt.unsqueeze(1)], dim=1)
            logits = model(sequence, attention_mask=keep)[:, -1].float()


def generate(
    model: CausalLM,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    pad_id: int = 0,
    use_cache: bool = True,
    compile: bool = False,
) -> list[list[int]]:
    """The new tokens of each prompt (a stop token, when hit, is the last one)."""
    out: list[list[int]] = [[] for _ in prompts]
    for step in stream(model, prompts, params, pad_id=pad_id, use_cache=use_cache, compile=compile):
        for i, tok in enumerate(step):
            if tok is not None:
                out[i].append(tok)
    return out


def stream_text_tokens(model: CausalLM, prompt: Sequence[int], params: SamplingParams) -> Iterator[int]:
    """One prompt, one token at a time: what a chat screen consumes."""
    for step in stream(model, [prompt], params):
        if step[0] is None:
            return
        yield step[0]
