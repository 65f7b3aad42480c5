"""Chat templates and the assistant-only label mask: conversations in, training examples out.

A conversation becomes one text (the template's rendering of all its messages) plus the character
spans ``[start, end)`` the model must learn: each assistant reply with its end-of-turn marker
(``<|im_end|>``, ``</s>``, the eos text). Everything else — system and user messages, role
headers, BOS, the newlines templates put between turns — is context: it is fed to the model but
carries label ``-100``, so the loss (and the gradient) comes from the assistant's words only, the
QLoRA paper's setting.

Three templates (:data:`TEMPLATES`, ``auto`` picks one):

- ``base``: the tokenizer's own jinja ``chat_template`` (Llama-2, Mistral, Qwen's ChatML,
  Zephyr, ours). The model then speaks the format it will be prompted with everywhere else
  (``transformers`` pipelines, vLLM, llama.cpp). Spans are found by rendering incrementally:
  for assistant message ``i``, ``prefix = render(messages[:i], add_generation_prompt=True)`` and
  ``upto = render(messages[:i + 1])``; the reply is ``upto[len(prefix):]``. That only means
  something when every render is a string prefix of the next (and of the full rendering), which
  is checked; templates that rewrite earlier turns (Qwen3 drops old reasoning) or whose
  generation prompt differs from the start of an assistant turn are refused with the fix.
- ``chatml``: ``<|im_start|>role\\ncontent<|im_end|>\\n`` per message, written in Python, for
  tokenizers that have the two ChatML tokens but no template.
- ``guanaco``: ``### Human: ...\\n### Assistant: ...`` (the QLoRA paper's format, plain text so
  any tokenizer can carry it), each reply followed by the eos text so the model learns to stop.

Where a span ends: at the last non-whitespace character of the assistant's rendered turn. The
newline most templates write after the end-of-turn token is formatting between turns, which the
model never has to produce (generation stops at the marker before it), so it is not learned.

Labelling rule (:func:`label_mask`): the full text is tokenized once, with offsets and without
added special tokens (templates already contain BOS text), and a token is labelled when its
characters intersect a learned span — token ``[a, b)`` and span ``[s, e)`` with ``a < e`` and
``b > s`` (a zero-width token counts as ``[a, a + 1)``). Intersection, not containment, because
byte-level and SentencePiece tokens often carry the space before a word (``"Ġthere"``,
``"▁there"``): when the prompt ends with a space and the reply starts with a word, the one token
``" word"`` is the only way the model can produce that word, so it must be learned even though
its first character belongs to the prompt. A token straddling a span's end is learned for the
same reason.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config.errors import ConfigError

TEMPLATES = ("auto", "base", "chatml", "guanaco")
IGNORE_INDEX = -100  # Hugging Face's "no loss here" label
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
BASE_NAME = "base (tokenizer's own)"
#: A conversation every sane template renders; used at construction to refuse a bad template early.
_PROBE = (
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "How are you?"},
    {"role": "assistant", "content": "Fine, thanks."},
)
_FIX = "Fix: `--set chat_template=chatml` (or `--set chat_template=guanaco`) to use a template of ours."

Message = dict[str, Any]
Span = tuple[int, int]


@dataclass
class Example:
    """One training example: token ids and their labels (``-100`` where no loss is taken).

    Labels are not shifted: position ``t`` holds ``input_ids[t]`` when that token is learned, and
    the model shifts internally (Hugging Face's causal-LM convention).
    """

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodeStats:
    """What :func:`encode_all` did, for the run's log and run_info.

    ``dropped`` conversations produced no example (truncation left no assistant token);
    ``truncated`` counts kept examples that lost their tail to ``max_len``. ``tokens`` and
    ``assistant_tokens`` are over the kept examples.
    """

    conversations: int = 0
    examples: int = 0
    dropped: int = 0
    truncated: int = 0
    tokens: int = 0
    assistant_tokens: int = 0


def label_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[bool]:
    """For each token's character offsets ``(a, b)``, whether it intersects one of ``spans``.

    ``spans`` are sorted and disjoint. See the module docstring for why intersection is the rule.
    """
    ends = [e for _, e in spans]
    mask: list[bool] = []
    for a, b in offsets:
        b = max(b, a + 1)
        j = bisect.bisect_right(ends, a)  # first span ending after the token starts
        mask.append(j < len(spans) and spans[j][0] < b)
    return mask


class ChatFormatter:
    """Renders conversations with one chat template and encodes them with assistant-only labels.

    ``template`` is one of :data:`TEMPLATES`; ``field_name`` is the config field template
    errors are reported against (so the console shows them next to the right input).
    """

    def __init__(self, tokenizer: Any, template: str = "auto", *, field_name: str = "chat_template") -> None:
        self.tokenizer = tokenizer
        self.field_name = field_name
        if template not in TEMPLATES:
            raise ConfigError(
                field_name,
                f"chat_template {template!r} is not one of {', '.join(TEMPLATES)}. Fix: use auto (the "
                "tokenizer's own template when it has one), base, chatml or guanaco.",
            )
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                "base",
                f"the tokenizer ({type(tokenizer).__name__}) has no fast (Rust) version; the label mask "
                "needs its character offsets. Fix: choose a base model that ships tokenizer.json.",
            )
        has_own = bool(getattr(tokenizer, "chat_template", None))
        if template == "auto":
            if has_own:
                template = "base"
            elif self._has_single_token(IM_START) and self._has_single_token(IM_END):
                template = "chatml"
            else:
                template = "guanaco"
        if template == "base" and not has_own:
            raise ConfigError(
                field_name,
                "chat_template base uses the tokenizer's own chat_template, and this tokenizer has none "
                "(no chat_template in its tokenizer_config.json or chat_template.jinja). "
                "Fix: `--set chat_template=auto` to pick one of ours, or name it: "
                "`--set chat_template=chatml` or `--set chat_template=guanaco`.",
            )
        self.kind = template
        self.name = BASE_NAME if template == "base" else template
        self.bos_text = self._bos_text()
        self.eos_text: str = getattr(tokenizer, "eos_token", None) or ""
        if template == "guanaco" and not self.eos_text:
            raise ConfigError(
                field_name,
                "chat_template guanaco ends each reply with the tokenizer's eos token so the model learns "
                "to stop, but this tokenizer defines no eos_token. Fix: `--set chat_template=chatml`, or "
                "use a tokenizer with an eos_token.",
            )
        if template == "base":
            self.render(list(_PROBE))  # a template that cannot work fails now, not after loading the model

    # --- helpers ----------------------------------------------------------------------------------

    def _has_single_token(self, text: str) -> bool:
        """True when ``text`` is in the vocabulary and encodes to exactly that one token."""
        tok = self.tokenizer
        if text not in tok.get_vocab():
            return False
        return list(tok.encode(text, add_special_tokens=False)) == [tok.convert_tokens_to_ids(text)]

    def _bos_text(self) -> str:
        """The BOS text our templates start with: only if the tokenizer defines BOS and adds it itself.

        We tokenize without added special tokens (the base templates carry their BOS as text), so
        our own templates must write it too when the model was trained with it (Llama, Mistral).
        """
        tok = self.tokenizer
        bos_id = getattr(tok, "bos_token_id", None)
        if bos_id is None or not getattr(tok, "bos_token", None):
            return ""
        ids = list(tok("a", add_special_tokens=True)["input_ids"])
        return tok.bos_token if ids[:1] == [bos_id] else ""

    def _apply(self, messages: list[Message], generation_prompt: bool) -> str:
        """The tokenizer's own template on ``messages``; its errors become a ConfigError."""
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as exc:  # jinja TemplateError (raise_exception), TypeError, ValueError...
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            roles = ", ".join(str(m.get("role")) for m in messages)
            raise ConfigError(
                self.field_name,
                f"the tokenizer's own chat template rejected a conversation (roles: {roles}): {detail}. "
                "Some templates accept no system message or insist on strictly alternating user and "
                f"assistant turns. {_FIX} Or remove the system messages from the data.",
            ) from None
        if not isinstance(text, str):
            raise ConfigError(
                self.field_name,
                f"the tokenizer's apply_chat_template returned {type(text).__name__}, not text. {_FIX}",
            )
        return text

    def _pieces(self, conversation: Sequence[Message]) -> list[tuple[str, bool]]:
        """Our Python templates as ``(text, learned)`` pieces, in order."""
        pieces: list[tuple[str, bool]] = [(self.bos_text, False)] if self.bos_text else []
        for message in conversation:
            role, content = message["role"], message["content"]
            if self.kind == "chatml":
                pieces.append((f"{IM_START}{role}\n", False))
                if role == "assistant":
                    pieces += [(content + IM_END, True), ("\n", False)]
                else:
                    pieces.append((f"{content}{IM_END}\n", False))
            elif role == "assistant":  # guanaco; the space belongs to the reply (see generation_prompt)
                pieces += [("### Assistant:", False), (" " + content + self.eos_text, True), ("\n", False)]
            elif role == "user":
                pieces.append((f"### Human: {content}\n", False))
            else:  # a system message is a plain preamble, as in Vicuna-style prompts
                pieces.append((f"{content}\n", False))
        return pieces

    def _generation_prompt(self) -> str:
        """What opens an assistant turn in our templates.

        Guanaco's ends with the colon, not ``": "``: tokenizers glue the space to the next word
        (``"Ġword"``), so a prompt ending in a space would ask the model for a token sequence it
        never saw in training.
        """
        return f"{IM_START}assistant\n" if self.kind == "chatml" else "### Assistant:"

    def _render_base(self, conversation: list[Message]) -> tuple[str, list[Span]]:
        full = self._apply(conversation, False)
        spans: list[Span] = []
        previous = ""  # the render up to the last assistant reply
        for i, message in enumerate(conversation):
            if message["role"] != "assistant":
                continue
            prefix = self._apply(conversation[:i], True)
            upto = self._apply(conversation[: i + 1], False)
            stable = prefix.startswith(previous) and upto.startswith(prefix) and full.startswith(upto)
            if not stable:
                what = (
                    "the text it renders for the conversation up to a reply plus its generation prompt "
                    "is not the start of the text it renders once the reply is added"
                    if prefix.startswith(previous) and not upto.startswith(prefix)
                    else "it renders earlier turns differently once later ones are added"
                )
                raise ConfigError(
                    self.field_name,
                    f"the tokenizer's own chat template cannot be used for training: {what}, so the "
                    "assistant replies cannot be located to put the loss on them (typical of templates "
                    "that rewrite earlier turns, e.g. dropping old reasoning, or whose generation prompt "
                    f"is not how an assistant turn starts). {_FIX}",
                )
            start = len(prefix)
            end = start + len(upto[start:].rstrip())
            if end > start:
                spans.append((start, end))
            previous = upto
        return full, spans

    # --- public -----------------------------------------------------------------------------------

    def render(self, conversation: Sequence[Message]) -> tuple[str, list[Span]]:
        """The full text and the ``[start, end)`` character spans the model must learn."""
        if self.kind == "base":
            return self._render_base(list(conversation))
        text, spans, pos = [], [], 0
        for piece, learned in self._pieces(conversation):
            if learned:
                end = pos + len(piece.rstrip())
                if end > pos:
                    spans.append((pos, end))
            text.append(piece)
            pos += len(piece)
        return "".join(text), spans

    def prompt(self, conversation: Sequence[Message]) -> str:
        """Text to generate the next assistant reply from: the messages plus the generation prompt.

        It already holds any BOS text, so tokenize it with ``add_special_tokens=False``.
        """
        if self.kind == "base":
            return self._apply(list(conversation), True)
        return "".join(p for p, _ in self._pieces(conversation)) + self._generation_prompt()

    def _tokens(self, conversation: Sequence[Message]) -> tuple[list[int], list[int]]:
        text, spans = self.render(conversation)
        enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        ids = list(enc["input_ids"])
        mask = label_mask([tuple(o) for o in enc["offset_mapping"]], spans)
        return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]

    def encode(self, conversation: Sequence[Message], max_len: int) -> Example | None:
        """Token ids and labels, cut to the first ``max_len`` tokens; ``None`` if no label survives."""
        example, _ = self._encode(conversation, max_len)
        return example

    def _encode(self, conversation: Sequence[Message], max_len: int) -> tuple[Example | None, bool]:
        if max_len < 1:
            raise ValueError(f"max_len must be positive, got {max_len}")
        ids, labels = self._tokens(conversation)
        truncated = len(ids) > max_len
        ids, labels = ids[:max_len], labels[:max_len]
        if all(label == IGNORE_INDEX for label in labels):
            return None, truncated
        return Example(input_ids=ids, labels=labels), truncated


def encode_all(
    conversations: Iterable[Sequence[Message]], formatter: ChatFormatter, max_len: int
) -> tuple[list[Example], EncodeStats]:
    """Encode every conversation; the ones left without an assistant token are dropped and counted."""
    examples: list[Example] = []
    stats = EncodeStats()
    for conversation in conversations:
        stats.conversations += 1
        example, truncated = formatter._encode(conversation, max_len)
        if example is None:
            stats.dropped += 1
            continue
        examples.append(example)
        stats.examples += 1
        stats.truncated += int(truncated)
        stats.tokens += len(example.input_ids)
        stats.assistant_tokens += sum(label != IGNORE_INDEX for label in example.labels)
    return examples, stats
