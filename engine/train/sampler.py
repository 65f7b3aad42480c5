"""Samples during training: every ``sample_every`` steps, the model continues a few prompts and the
run writes what it wrote as ``sample`` events, so a user watches it learn to write.

The prompts come from ``sample_prompts`` (a text file, one prompt a line) or, by default, the
openings (:data:`PROMPT_TOKENS` tokens) of the first :data:`DEFAULT_PROMPTS` documents of the
validation split (the training split when there is none). Each prompt is fed after an EOS token,
the way every document but the first is preceded in the packed token files, so the model sees it
as the start of a document. Decoding is greedy by default (:data:`TEMPERATURE`), through the
engine's own generator (:mod:`engine.model.generate`), stopping at EOS or after
:data:`NEW_TOKENS` tokens.

Sampling must not change training: it runs on rank 0 only, in eval mode, without gradients, with
the RNG state of every device forked and restored (:func:`torch.random.fork_rng`), and the model
back in train mode afterwards, so the losses of a run are bit-identical with and without samples
(a test checks it). A failure while sampling (out of memory, say) turns sampling off for the rest
of the run with a warning instead of stopping the training it only illustrates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.config.loop import LoopConfig
from engine.model.generate import SamplingParams, generate
from engine.model.llama import CausalLM
from engine.train.recorder import RunRecorder

#: Prompts drawn from the validation split when no ``sample_prompts`` file is given.
DEFAULT_PROMPTS = 3
#: Tokens of each validation document's opening used as its prompt.
PROMPT_TOKENS = 12
#: New tokens written per prompt (fewer when the model's context is shorter).
NEW_TOKENS = 32
#: 0: greedy; a positive value samples with the run's seed.
TEMPERATURE = 0.0
#: How far into a token file the default prompts are looked for.
_SCAN_TOKENS = 1 << 20


@dataclass(frozen=True)
class SamplePrompt:
    """One prompt: the text shown and the token ids the model is given (EOS first)."""

    text: str
    ids: tuple[int, ...]


class TokenizerText:
    """Encode and decode with a ``tokenizer.json`` (the run's own, from the prepared data)."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids), skip_special_tokens=True))


def document_openings(path: Path, dtype: str, eos_id: int, count: int, tokens: int) -> list[list[int]]:
    """The first ``tokens`` tokens of the first ``count`` non-empty documents of a packed token
    file (documents end with EOS; see :mod:`engine.data.packing`)."""
    data = np.memmap(path, dtype=dtype, mode="r")
    head = np.asarray(data[:_SCAN_TOKENS], dtype=np.int64)
    out: list[list[int]] = []
    start = 0
    for end in [*np.flatnonzero(head == eos_id).tolist(), len(head)]:
        if end > start:
            out.append(head[start : min(end, start + tokens)].tolist())
            if len(out) == count:
                break
        start = end + 1
    return out


def build_prompts(
    cfg: LoopConfig, tokenizer: TokenizerText, eos_id: int, split: tuple[Path, str] | None
) -> list[SamplePrompt]:
    """The run's prompts: the ``sample_prompts`` file's lines, else the openings of ``split``'s
    first documents (``split`` is a packed token file and its dtype; None: no prompts)."""
    texts = cfg.read_sample_prompts()
    if texts is not None:
        return [SamplePrompt(text, (eos_id, *tokenizer.encode(text))) for text in texts]
    if split is None:
        return []
    path, dtype = split
    openings = document_openings(path, dtype, eos_id, DEFAULT_PROMPTS, PROMPT_TOKENS)
    return [SamplePrompt(tokenizer.decode(ids), (eos_id, *ids)) for ids in openings]


class Sampler:
    """Called by the loop with the step number; writes one ``sample`` event per prompt."""

    def __init__(
        self,
        model: CausalLM,
        prompts: Sequence[SamplePrompt],
        decode: Callable[[Sequence[int]], str],
        recorder: RunRecorder,
        *,
        eos_id: int,
        new_tokens: int = NEW_TOKENS,
        temperature: float = TEMPERATURE,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.decode = decode
        self.recorder = recorder
        self.eos_id = eos_id
        self.temperature = temperature
        self.seed = seed
        room = model.config.max_seq_len
        keep = max(1, room // 2)  # a long prompt keeps its end and leaves room to write
        self.prompts = [SamplePrompt(p.text, p.ids[-keep:]) for p in prompts]
        longest = max((len(p.ids) for p in self.prompts), default=1)
        self.new_tokens = max(1, min(new_tokens, room - longest))
        self.enabled = bool(self.prompts)

    def __call__(self, step: int) -> None:
        if not self.enabled:
            return
        try:
            outputs = self.generate()
        except (RuntimeError, ValueError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            self.enabled = False
            self.recorder.log(
                f"sampling at step {step} failed ({type(exc).__name__}: {exc}); samples are off for the "
                "rest of this run, training goes on. Fix: lower sample_every's cost with fewer or shorter "
                "sample_prompts, or set sample_every=0.",
                level="warning",
            )
            return
        for index, (prompt, ids) in enumerate(zip(self.prompts, outputs, strict=True)):
            text_ids = ids[:-1] if ids and ids[-1] == self.eos_id else ids
            self.recorder.emit(
                "sample",
                step=step,
                prompt=prompt.text,
                text=self.decode(text_ids),
                index=index,
                new_tokens=len(ids),
                temperature=self.temperature,
                seed=self.seed,
            )

    def generate(self) -> list[list[int]]:
        """Each prompt's new tokens, leaving the model, its mode and every RNG as they were."""
        model = self.model
        device = model.lm_head.weight.device
        was_training = model.training
        params = SamplingParams(
            max_new_tokens=self.new_tokens,
            temperature=self.temperature,
            stop_tokens=(self.eos_id,),
            seed=self.seed,
        )
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            try:
                return generate(model, [p.ids for p in self.prompts], params, pad_id=self.eos_id)
            finally:
                model.train(was_training)


def build_sampler(
    cfg: LoopConfig,
    model: CausalLM,
    prepared: Any,
    recorder: RunRecorder,
    *,
    sharded: bool = False,
) -> Sampler | None:
    """The pre-training sampler for ``cfg`` (None when ``sample_every`` is 0 or nothing can be
    sampled); call it on rank 0 only. ``prepared`` is the run's
    :class:`~engine.data.packing.PreparedData`; ``sharded`` (FSDP) turns sampling off with a
    warning: a forward on one rank would wait forever for the others' shards."""
    if not cfg.sample_every:
        return None
    if sharded:
        recorder.log(
            "sample_every is ignored with distributed=fsdp (generating on one rank needs every rank's "
            "shards). Fix: use distributed=ddp to see samples, or set sample_every=0.",
            level="warning",
        )
        return None
    tokenizer = TokenizerText(prepared.tokenizer_dir)
    eos = int(prepared.eos_id)
    split = prepared.val if prepared.val is not None else prepared.train
    prompts = build_prompts(cfg, tokenizer, eos, (split, prepared.dtype))
    if not prompts:
        recorder.log("sample_every is set but no prompt was found: no samples.", level="warning")
        return None
    return Sampler(model, prompts, tokenizer.decode, recorder, eos_id=eos, seed=cfg.seed)
