"""Samples during a fine-tune: every ``sample_every`` steps the model answers a few user messages
through its chat template, written as ``sample`` events like a pre-training run's continuations.

The messages come from ``sample_prompts`` (a text file, one user message a line) or, by default,
the openings of the first :data:`~engine.train.sampler.DEFAULT_PROMPTS` held-out conversations
(their system message, if any, and first user message), so the user watches the answers to the
questions the validation loss is measured on change as the adapter learns.

Generation goes through ``transformers``' ``generate`` on the PEFT model (quantised base plus
adapter), greedy, one prompt at a time (no padding to get wrong), with the same promise as the
pre-training sampler: rank 0 only, eval mode (bitsandbytes' layers kept as they are: see
:func:`~engine.finetune.qlora.evaluating`), no gradients, every RNG forked and restored, train mode
back afterwards, so a run's losses are the same with and without samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engine.config.finetune import FinetuneConfig
from engine.finetune.chat_format import ChatFormatter, Message
from engine.finetune.qlora import evaluating
from engine.train.recorder import RunRecorder
from engine.train.sampler import DEFAULT_PROMPTS, NEW_TOKENS, TEMPERATURE, SamplePrompt, Sampler


def conversation_openings(conversations: Sequence[Sequence[Message]], count: int) -> list[list[Message]]:
    """The messages up to and including the first user message of the first ``count``
    conversations that have one (a system message stays: it shapes the answer)."""
    out: list[list[Message]] = []
    for conversation in conversations:
        opening: list[Message] = []
        for message in conversation:
            opening.append({"role": message["role"], "content": message["content"]})
            if message["role"] == "user":
                out.append(opening)
                break
        if len(out) == count:
            break
    return out


class ChatSampler(Sampler):
    """A :class:`~engine.train.sampler.Sampler` whose prompts are conversations and whose model is
    a ``transformers`` (PEFT) model; the loop calls it with the step number."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        openings: Sequence[Sequence[Message]],
        formatter: ChatFormatter,
        recorder: RunRecorder,
        *,
        max_len: int,
        pad_id: int,
        new_tokens: int = NEW_TOKENS,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.recorder = recorder
        self.temperature = TEMPERATURE
        self.seed = seed
        self.pad_id = pad_id
        eos = tokenizer.eos_token_id
        self.eos_id = int(eos) if eos is not None else -1
        self.decode = lambda ids: str(tokenizer.decode(list(ids), skip_special_tokens=True))
        keep = max(1, max_len // 2)  # a long conversation keeps its end and leaves room to answer
        self.prompts = []
        for opening in openings:
            ids = tokenizer(formatter.prompt(list(opening)), add_special_tokens=False)["input_ids"]
            self.prompts.append(SamplePrompt(str(opening[-1]["content"]), tuple(ids[-keep:])))
        longest = max((len(p.ids) for p in self.prompts), default=1)
        self.new_tokens = max(1, min(new_tokens, max_len - longest))
        self.enabled = bool(self.prompts)

    def generate(self) -> list[list[int]]:
        """Each prompt's new tokens, leaving the model, its mode and every RNG as they were."""
        model = self.model
        device = next(model.parameters()).device
        devices = [device] if device.type == "cuda" else []
        # ``evaluating``, not ``model.eval()``: an eval-mode forward makes bitsandbytes repack 4-bit
        # weights for good on some CPUs, and every later training step would then differ.
        with torch.random.fork_rng(devices=devices), torch.no_grad(), evaluating(model):
            outputs = []
            for prompt in self.prompts:
                ids = torch.tensor([prompt.ids], dtype=torch.long, device=device)
                new = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=self.new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=self.pad_id,
                )[0, ids.shape[1] :]
                outputs.append([int(t) for t in new])
            return outputs


def build_chat_sampler(
    cfg: FinetuneConfig,
    model: Any,
    tokenizer: Any,
    formatter: ChatFormatter,
    held_out: Sequence[Sequence[Message]],
    recorder: RunRecorder,
    *,
    pad_id: int,
) -> ChatSampler | None:
    """The fine-tune sampler for ``cfg`` (None when ``sample_every`` is 0 or there is nothing to ask);
    call it on rank 0 only. ``held_out``: the conversations the validation loss is measured on."""
    if not cfg.sample_every:
        return None
    texts = cfg.read_sample_prompts()
    if texts is not None:
        openings: list[list[Message]] = [[{"role": "user", "content": t}] for t in texts]
    else:
        openings = conversation_openings(held_out, DEFAULT_PROMPTS)
    if not openings:
        recorder.log(
            "sample_every is set but there is no held-out conversation to ask from. Fix: give "
            "sample_prompts (a file, one user message a line) or a larger val_fraction.",
            level="warning",
        )
        return None
    return ChatSampler(
        model, tokenizer, openings, formatter, recorder, max_len=cfg.seq_len, pad_id=pad_id, seed=cfg.seed
    )
