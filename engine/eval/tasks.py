"""The texts an evaluation reads, and the samples its generation task is made of.

Where the text comes from (:func:`texts_for`):

- ``--data SPEC``: the spec's documents (the data-spec grammar of :mod:`engine.data.spec`), the
  same text for every model, so models with different tokenizers are compared on one corpus;
- a pre-training run without ``--data``: the documents of its own validation split, the very
  documents its training held out (prepared again from its config when the data cache lost them:
  preparation is seeded, so the split is the same);
- a fine-tune without ``--data``: its held-out conversations (the seeded split of
  :func:`engine.finetune.chat_data.split.split_conversations` with the run's ``val_fraction`` and
  ``seed``).

Which samples: a seeded order over the documents (``random.Random(seed)``); perplexity scores the
first ``samples`` documents of it; the generation task takes, in the same order, the first
``samples`` documents that are longer than the prompt (``P`` tokens), cuts each after ``P``
tokens of the first model's tokenizer, and asks every model to continue the prompt text for ``C``
new tokens against the true next ``C`` tokens' text. Every model sees the same prompt and
reference text, so per-sample comparisons are paired. For conversations: the conversation without
its final assistant reply is the prompt, that reply the reference.

Torch-free; ``datasets`` only when a spec is read.
"""

from __future__ import annotations

import itertools
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError

Conversation = list[dict[str, str]]


@dataclass
class EvalTexts:
    """The text one or more models are evaluated on. ``source`` names it (and keys the samples):
    ``data:SPEC``, ``run:ID validation`` or ``run:ID held-out conversations``."""

    source: str
    documents: list[str] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)

    @property
    def chat(self) -> bool:
        return bool(self.conversations)


@dataclass
class GenerationSample:
    """One generation prompt with its reference. ``messages``: for conversations, what the model
    answers; ``prompt`` is then a plain transcript of them (what people read)."""

    index: int
    prompt: str
    reference: str
    messages: Conversation | None = None
    document: int | None = None  # the document it was cut from


def seeded_order(n: int, seed: int) -> list[int]:
    """``range(n)`` in a seeded order (the same for every model and every run with this seed)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def words(text: str) -> int:
    """Words as lm-evaluation-harness counts them for word perplexity (wikitext)."""
    return len(re.split(r"\s+", text))


def text_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


# ------------------------------------------------------------------------------ where texts come from
def data_documents(spec_text: str) -> list[str]:
    """Every document of a data spec, in spec order (weights ignored: the whole of each source)."""
    from engine.data.sources import check_source, load_source
    from engine.data.spec import parse_spec, validate_spec

    spec = validate_spec(parse_spec(spec_text, field_name="data"), field_name="data")
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="canvas-eval-") as work:
        for i, source in enumerate(spec.sources):
            check = check_source(source, field_name="data")
            ds = load_source(check, Path(work) / f"src{i}", field_name="data")
            out.extend(str(t) for t in ds["text"])
    if not out:
        raise ConfigError("data", f"--data {spec_text!r} gives no documents. Fix: check the files' contents.")
    return out


def pretrain_validation(run_path: Path, config: dict[str, Any]) -> list[str]:
    """The documents of a pre-training run's validation split, as text.

    The split lives in the prepared-data cache (``val.bin``: each document's tokens followed by
    EOS); :func:`engine.data.packing.prepare` with the run's own settings finds it (or prepares it
    again, identically). Each document is decoded with the tokenizer it was packed with."""
    from engine.config.train import TrainConfig
    from engine.data import TokenizerConfig, prepare

    cfg = TrainConfig.from_dict(config)
    tok = TokenizerConfig(vocab_size=cfg.vocab_size or cfg.model.vocab_size, pretrained=cfg.tokenizer or None)
    prepared = prepare(cfg.data, tok, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if prepared.val is None:
        raise ConfigError(
            "data",
            f"run {run_path.name} was trained with val_fraction = 0, so it has no validation split. "
            "Fix: pass --data SPEC to evaluate it on other text.",
        )
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(prepared.tokenizer_dir / "tokenizer.json"))
    tokens = np.asarray(prepared.tokens("val"))
    bounds = [-1, *np.flatnonzero(tokens == prepared.eos_id).tolist(), len(tokens)]
    pieces = [tokens[a + 1 : b].tolist() for a, b in itertools.pairwise(bounds) if b > a + 1]
    docs = tokenizer.decode_batch(pieces, skip_special_tokens=False)
    return [d for d in docs if d.strip()]


def finetune_held_out(config: dict[str, Any]) -> list[Conversation]:
    """A fine-tune's held-out conversations: the split its training made (same spec, fraction, seed)."""
    from engine.config.finetune import FinetuneConfig
    from engine.finetune.chat_data.load import load_conversations
    from engine.finetune.chat_data.spec import parse_chat_spec
    from engine.finetune.chat_data.split import split_conversations

    cfg = FinetuneConfig.from_dict(config)
    conversations = load_conversations(parse_chat_spec(cfg.data))
    _, val = split_conversations(conversations, cfg.val_fraction, cfg.seed)
    if not val:
        raise ConfigError(
            "data",
            "the fine-tune held out no conversations (val_fraction = 0 or a single conversation). "
            "Fix: pass --data SPEC to evaluate it on other text.",
        )
    return [[dict(m) for m in conv] for conv in val]


def texts_for(model: dict[str, Any], data: str | None) -> EvalTexts:
    """The texts for one resolved model entry (``kind``, ``run_id``, its run's path and config)."""
    if data is not None:
        return EvalTexts(f"data:{data}", documents=data_documents(data))
    run_id = model.get("run_id")
    if model.get("kind") == "pretrain":
        return EvalTexts(
            f"run:{run_id} validation",
            documents=pretrain_validation(Path(model["run_path"]), model.get("config") or {}),
        )
    if model.get("kind") == "finetune":
        return EvalTexts(
            f"run:{run_id} held-out conversations", conversations=finetune_held_out(model.get("config") or {})
        )
    raise ConfigError(
        "data",
        f"{model.get('label')} has no held-out split of its own. Fix: pass --data SPEC.",
    )


# ------------------------------------------------------------------------------------ samples
def transcript(messages: Sequence[dict[str, str]]) -> str:
    """A conversation as plain lines ``role: content`` (for people and samples.jsonl)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def conversation_samples(conversations: Sequence[Conversation], n: int, seed: int) -> list[GenerationSample]:
    """The first ``n`` conversations in the seeded order: all but the final reply, and that reply."""
    out: list[GenerationSample] = []
    for i in seeded_order(len(conversations), seed):
        conv = conversations[i]
        if len(conv) < 2 or conv[-1]["role"] != "assistant":
            continue
        messages = [dict(m) for m in conv[:-1]]
        out.append(
            GenerationSample(
                len(out), transcript(messages), conv[-1]["content"], messages=messages, document=i
            )
        )
        if len(out) >= n:
            break
    return out


def document_samples(
    documents: Sequence[str],
    n: int,
    seed: int,
    *,
    prompt_tokens: int,
    new_tokens: int,
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
) -> list[GenerationSample]:
    """The first ``n`` documents (seeded order) longer than ``prompt_tokens``: the first P tokens'
    text as the prompt, the next C tokens' text as the reference."""
    out: list[GenerationSample] = []
    for i in seeded_order(len(documents), seed):
        ids = encode(documents[i])
        if len(ids) <= prompt_tokens:
            continue
        prompt = decode(ids[:prompt_tokens])
        reference = decode(ids[prompt_tokens : prompt_tokens + new_tokens])
        if not reference.strip():
            continue
        out.append(GenerationSample(len(out), prompt, reference, document=i))
        if len(out) >= n:
            break
    return out


def perplexity_documents(documents: Sequence[str], n: int, seed: int) -> list[int]:
    """Indices of the documents perplexity scores: the first ``n`` of the seeded order."""
    return [i for i in seeded_order(len(documents), seed) if documents[i].strip()][:n]
