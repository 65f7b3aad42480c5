"""Chat formatting with assistant-only labels, and the fine-tuning batches (padded, packed, resume).

Every tokenizer here is real and built locally (a tiny byte-level BPE trained in milliseconds), so
offsets, special-token matching and decoding are the library's own. Expected label masks are
computed independently of the code under test: the text is written out by hand as pieces, each
piece tokenized on its own, and the learned pieces marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config.errors import ConfigError
from engine.data.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
from engine.finetune.batches import ChatBatches
from engine.finetune.chat_format import (
    IGNORE_INDEX,
    TEMPLATES,
    ChatFormatter,
    Example,
    encode_all,
    label_mask,
)

CORPUS = [
    "Hello there, how are you? I am fine, thanks. Good to hear that you are well.",
    "The quick brown fox jumps over the lazy dog. Be brief and kind.",
    "Human and Assistant talk: system, user, assistant. INST SYS 0123456789.",
] * 20

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello, how are you?"},
    {"role": "user", "content": "Fine thanks"},
    {"role": "assistant", "content": "Good to hear."},
]
NO_SYSTEM = CONV[1:]

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
#: Gemma-style: no system role at all.
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
#: The generation prompt ("<assistant>\n") is not how an assistant turn starts ("<assistant>").
BAD_PROMPT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>\n{% endif %}"
)
#: Rewrites earlier turns: a header with the number of messages.
REWRITING_TEMPLATE = (
    "[{{ messages | length }} messages]{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
#: A generation prompt ending in a space: the reply's first token carries that space.
SPACE_PROMPT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}</s>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)


# --- tokenizers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Our own tokenizer, saved and loaded the way a run's export is (ChatML chat_template)."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tok") / "ours"
    save_tokenizer(train_tokenizer([CORPUS], TokenizerConfig(vocab_size=400)), folder)
    return AutoTokenizer.from_pretrained(str(folder))


def _bpe(specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok


def _fast(template: str | None = None, *, adds_bos: bool = False, im: bool = False) -> Any:
    """A ``PreTrainedTokenizerFast`` with ``<s>``/``</s>`` (plus ChatML tokens if ``im``)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"] + (["<|im_start|>", "<|im_end|>"] if im else [])
    tok = _bpe(specials)
    if adds_bos:  # Llama-style: the tokenizer puts BOS in front when asked for special tokens
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    kwargs: dict[str, Any] = {"chat_template": template} if template else {}
    if im:
        kwargs["additional_special_tokens"] = ["<|im_start|>", "<|im_end|>"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        clean_up_tokenization_spaces=False,
        **kwargs,
    )


# --- helpers --------------------------------------------------------------------------------------


def _expected(tok: Any, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[bool]]:
    """Token ids and the label mask from hand-written ``(text, learned)`` pieces, tokenized apart."""
    ids: list[int] = []
    mask: list[bool] = []
    for text, learned in pieces:
        piece_ids = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece_ids
        mask += [learned] * len(piece_ids)
    return ids, mask


def _runs(tok: Any, example: Example) -> list[str]:
    """The labelled tokens, decoded one contiguous run at a time."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(example.input_ids, example.labels, strict=True):
        learned = label != IGNORE_INDEX
        if learned:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = learned
    return [tok.decode(run, skip_special_tokens=False) for run in runs]


def _check(tok: Any, fmt: ChatFormatter, conv: list[dict[str, str]], pieces: list[tuple[str, bool]]) -> None:
    """The rendering equals the pieces, and the label mask is exactly their learned part."""
    text, spans = fmt.render(conv)
    assert text == "".join(p for p, _ in pieces)
    ids, mask = _expected(tok, pieces)
    assert tok(text, add_special_tokens=False)["input_ids"] == ids  # pieces split at token boundaries
    example = fmt.encode(conv, max_len=10_000)
    assert example is not None
    assert example.input_ids == ids
    assert [label != IGNORE_INDEX for label in example.labels] == mask
    learned = [p.rstrip() for p, is_learned in pieces if is_learned]
    assert _runs(tok, example) == learned
    assert [text[s:e] for s, e in spans] == learned


# --- the label mask -------------------------------------------------------------------------------


def test_label_mask_rule_is_intersection() -> None:
    spans = [(4, 9), (20, 25)]
    offsets = [(0, 3), (3, 9), (9, 10), (10, 20), (19, 21), (25, 30), (22, 22), (9, 9)]
    # (3, 9) starts with a prompt space but holds span chars -> learned; (10, 20) ends where a span
    # starts -> not; (19, 21) straddles a start -> learned; a zero-width token counts as one char.
    assert label_mask(offsets, spans) == [False, True, False, False, True, False, True, False]
    assert label_mask(offsets, []) == [False] * len(offsets)


def test_base_template_ours_chatml(ours: Any) -> None:
    fmt = ChatFormatter(ours)  # auto: the tokenizer has its own (ChatML) template
    assert fmt.name == "base (tokenizer's own)"
    pieces = [
        (
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
            "<|im_start|>assistant\n",
            False,
        ),
        ("Hello, how are you?<|im_end|>", True),
        ("\n<|im_start|>user\nFine thanks<|im_end|>\n<|im_start|>assistant\n", False),
        ("Good to hear.<|im_end|>", True),
        ("\n", False),
    ]
    _check(ours, fmt, CONV, pieces)
    assert fmt.prompt(CONV[:2]).endswith("Hi there<|im_end|>\n<|im_start|>assistant\n")


def test_python_chatml_same_text_as_our_template(ours: Any) -> None:
    fmt = ChatFormatter(ours, "chatml")
    assert fmt.name == "chatml"
    base = ChatFormatter(ours, "base")
    assert fmt.render(CONV) == base.render(CONV)
    assert fmt.prompt(CONV[:2]) == base.prompt(CONV[:2])
    assert _runs(ours, fmt.encode(NO_SYSTEM, 10_000)) == [
        "Hello, how are you?<|im_end|>",
        "Good to hear.<|im_end|>",
    ]


def test_llama2_template() -> None:
    tok = _fast(LLAMA2_TEMPLATE)
    fmt = ChatFormatter(tok, "base")
    pieces = [
        ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]", False),
        (" Hello, how are you? </s>", True),
        ("<s>[INST] Fine thanks [/INST]", False),
        (" Good to hear. </s>", True),
    ]
    _check(tok, fmt, CONV, pieces)


def test_llama2_template_rejects_non_alternating_roles() -> None:
    fmt = ChatFormatter(_fast(LLAMA2_TEMPLATE))
    bad = [*NO_SYSTEM[:2], {"role": "assistant", "content": "Again."}]
    with pytest.raises(ConfigError) as err:
        fmt.encode(bad, 100)
    assert err.value.field == "chat_template"
    assert "roles must alternate" in str(err.value)
    assert "chat_template=chatml" in str(err.value)


def test_zephyr_template_with_system() -> None:
    tok = _fast(ZEPHYR_TEMPLATE)
    fmt = ChatFormatter(tok)
    assert fmt.name == "base (tokenizer's own)"
    pieces = [
        ("<|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\n", False),
        ("Hello, how are you?</s>", True),
        ("\n<|user|>\nFine thanks</s>\n<|assistant|>\n", False),
        ("Good to hear.</s>", True),
        ("\n", False),
    ]
    _check(tok, fmt, CONV, pieces)


def test_prompt_space_goes_with_the_reply() -> None:
    """A prompt ending in a space: the reply's first token (" there") straddles and is learned."""
    tok = _fast(SPACE_PROMPT_TEMPLATE)
    fmt = ChatFormatter(tok)
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "there you are"}]
    text, spans = fmt.render(conv)
    assert [text[s:e] for s, e in spans] == ["there you are</s>"]
    example = fmt.encode(conv, 100)
    first = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
    assert tok.convert_ids_to_tokens(example.input_ids[first]) == "Ġthere"  # its space is the prompt's
    assert _runs(tok, example) == [" there you are</s>"]


def test_guanaco_fallback_with_eos_after_each_reply() -> None:
    tok = _fast()  # no template, no ChatML tokens
    fmt = ChatFormatter(tok)
    assert fmt.name == "guanaco"
    pieces = [
        ("Be brief.\n### Human: Hi there\n### Assistant:", False),
        (" Hello, how are you?</s>", True),
        ("\n### Human: Fine thanks\n### Assistant:", False),
        (" Good to hear.</s>", True),
        ("\n", False),
    ]
    _check(tok, fmt, CONV, pieces)
    assert fmt.prompt(NO_SYSTEM[:1]) == "### Human: Hi there\n### Assistant:"


def test_guanaco_writes_bos_when_the_tokenizer_adds_it() -> None:
    tok = _fast(adds_bos=True)
    assert tok("a")["input_ids"][0] == tok.bos_token_id
    fmt = ChatFormatter(tok, "guanaco")
    pieces = [
        ("<s>### Human: Hi there\n### Assistant:", False),
        (" Hello, how are you?</s>", True),
        ("\n### Human: Fine thanks\n### Assistant:", False),
        (" Good to hear.</s>", True),
        ("\n", False),
    ]
    _check(tok, fmt, NO_SYSTEM, pieces)
    example = fmt.encode(NO_SYSTEM, 100)
    assert example.input_ids.count(tok.bos_token_id) == 1  # BOS once: as text, not added again


def test_auto_choice_and_base_without_template(ours: Any) -> None:
    assert TEMPLATES == ("auto", "base", "chatml", "guanaco")
    assert ChatFormatter(ours).name == "base (tokenizer's own)"
    assert ChatFormatter(_fast(im=True)).name == "chatml"
    assert ChatFormatter(_fast()).name == "guanaco"
    with pytest.raises(ConfigError) as err:
        ChatFormatter(_fast(), "base")
    assert err.value.field == "chat_template"
    assert "chat_template" in str(err.value) and "chat_template=chatml" in str(err.value)
    with pytest.raises(ConfigError) as err:
        ChatFormatter(ours, "vicuna", field_name="finetune.chat_template")
    assert err.value.field == "finetune.chat_template"


def test_chatml_when_the_tokenizer_has_the_tokens() -> None:
    tok = _fast(im=True)
    fmt = ChatFormatter(tok)
    pieces = [
        ("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello, how are you?<|im_end|>", True),
        ("\n<|im_start|>user\nFine thanks<|im_end|>\n<|im_start|>assistant\n", False),
        ("Good to hear.<|im_end|>", True),
        ("\n", False),
    ]
    _check(tok, fmt, NO_SYSTEM, pieces)


@pytest.mark.parametrize(
    ("template", "words"),
    [(BAD_PROMPT_TEMPLATE, "generation prompt"), (REWRITING_TEMPLATE, "earlier turns")],
)
def test_template_that_is_not_prefix_stable_is_refused(template: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        ChatFormatter(_fast(template))  # the probe conversation at construction already fails
    assert err.value.field == "chat_template"
    assert words in str(err.value) and "chat_template=chatml" in str(err.value)


def test_template_rejecting_a_system_message() -> None:
    fmt = ChatFormatter(_fast(NO_SYSTEM_TEMPLATE))  # fine without a system message
    assert fmt.encode(NO_SYSTEM, 100) is not None
    with pytest.raises(ConfigError) as err:
        fmt.encode(CONV, 100)
    message = str(err.value)
    assert err.value.field == "chat_template"
    assert "System role not supported" in message and "system message" in message
    assert "chat_template=chatml" in message


# --- truncation -----------------------------------------------------------------------------------


def test_truncation_keeps_the_start_and_drops_examples_without_labels(ours: Any) -> None:
    fmt = ChatFormatter(ours, "chatml")
    full = fmt.encode(CONV, 10_000)
    first_label = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    cut = fmt.encode(CONV, first_label + 2)
    assert cut.input_ids == full.input_ids[: first_label + 2]
    assert cut.labels == full.labels[: first_label + 2]
    assert fmt.encode(CONV, first_label) is None  # only the prompt is left

    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    n_short = len(fmt.encode(short, 10_000))
    max_len = first_label + 2
    assert n_short <= max_len
    examples, stats = encode_all([short, CONV, CONV[:3]], fmt, max_len)
    # CONV[:3] has its first reply at the same place as CONV, so it is cut as well
    assert (stats.conversations, stats.examples, stats.dropped, stats.truncated) == (3, 3, 0, 2)
    assert stats.tokens == n_short + 2 * max_len
    assert stats.assistant_tokens == sum(sum(x != IGNORE_INDEX for x in e.labels) for e in examples)

    examples, stats = encode_all([short, CONV], fmt, first_label)
    assert len(examples) == 1 and examples[0].input_ids[:1] == full.input_ids[:1]
    assert (stats.conversations, stats.examples, stats.dropped, stats.truncated) == (2, 1, 1, 0)
    assert stats.tokens == n_short


# --- batches --------------------------------------------------------------------------------------

PAD = 0


def _examples(n: int, max_len: int, seed: int = 0) -> list[Example]:
    """Example ``k`` starts with the unique marker ``1000 + k``; labels on its second half."""
    import random

    rng = random.Random(seed)
    out = []
    for k in range(n):
        length = rng.randint(1, max_len)
        ids = [1000 + k] + [10 + (k + j) % 50 for j in range(length - 1)]
        labels = [IGNORE_INDEX if j < length // 2 else t for j, t in enumerate(ids)]
        out.append(Example(ids, labels))
    return out


def _epoch(batches: ChatBatches) -> list[dict[str, Any]]:
    return [batches.next_batch() for _ in range(batches.batches_per_epoch)]


def _found(examples: list[Example], epoch: list[dict[str, Any]], seq_len: int | None) -> list[int]:
    """How often each example occurs whole in the epoch's rows (markers locate them)."""
    seen = [0] * len(examples)
    for batch in epoch:
        ids, labels, mask = (batch[k].tolist() for k in ("input_ids", "labels", "attention_mask"))
        for row_ids, row_labels, row_mask in zip(ids, labels, mask, strict=True):
            if seq_len is not None:
                assert len(row_ids) == seq_len
            real = sum(row_mask)
            assert row_mask == [1] * real + [0] * (len(row_mask) - real)
            assert row_ids[real:] == [PAD] * (len(row_ids) - real)
            assert row_labels[real:] == [IGNORE_INDEX] * (len(row_ids) - real)
            pos = 0
            while pos < real:  # the row is whole examples back to back
                k = row_ids[pos] - 1000
                ex = examples[k]
                end = pos + len(ex.input_ids)
                assert row_ids[pos:end] == ex.input_ids and row_labels[pos:end] == ex.labels
                seen[k] += 1
                pos = end
            assert pos == real
    return seen


def test_padded_batches() -> None:
    examples = _examples(7, 12)
    batches = ChatBatches(examples, 3, 12, packing=False, pad_id=PAD, seed=1)
    assert batches.batches_per_epoch == 3
    epoch = _epoch(batches)
    assert [b["input_ids"].shape[0] for b in epoch] == [3, 3, 1]  # the partial last batch is kept
    for batch in epoch:
        longest = int(batch["attention_mask"].sum(1).max())
        assert batch["input_ids"].shape[1] == longest  # padded to the longest in the batch
        assert {str(v.dtype) for v in batch.values()} == {"torch.int64"}
        assert batches.tokens_in(batch) == int(batch["attention_mask"].sum())
        copy = {k: v.clone() for k, v in batch.items()}  # not one of its own: counted from the mask
        assert batches.tokens_in(copy) == int(batch["attention_mask"].sum())
    assert _found(examples, epoch, None) == [1] * 7
    assert sum(batches.tokens_in(b) for b in epoch) == sum(len(e) for e in examples)
    batches.next_batch()
    assert (batches.epoch, batches.step) == (1, 1)


def test_packed_batches() -> None:
    examples = _examples(40, 16)
    batches = ChatBatches(examples, 4, 16, packing=True, pad_id=PAD, seed=3)
    n_rows = len(batches.rows)
    assert n_rows < 40 and batches.batches_per_epoch == -(-n_rows // 4)
    for _ in range(2):  # every epoch: every example once, whole
        epoch = _epoch(batches)
        assert _found(examples, epoch, 16) == [1] * 40
        assert sum(b["input_ids"].shape[0] for b in epoch) == n_rows
        assert sum(batches.tokens_in(b) for b in epoch) == sum(len(e) for e in examples)


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("packing", [False, True])
def test_determinism_per_seed(packing: bool) -> None:
    examples = _examples(30, 16)

    def run(seed: int) -> list[dict[str, Any]]:
        batches = ChatBatches(examples, 2, 16, packing=packing, pad_id=PAD, seed=seed)
        return [batches.next_batch() for _ in range(2 * batches.batches_per_epoch)]

    first = run(7)
    assert _same(first, run(7))
    assert not _same(first, run(8))
    half = len(first) // 2
    assert not _same(first[:half], first[half:])  # a new order each epoch


@pytest.mark.parametrize("packing", [False, True])
def test_exact_resume_across_an_epoch_boundary(packing: bool) -> None:
    examples = _examples(25, 16)
    make = lambda: ChatBatches(examples, 3, 16, packing=packing, pad_id=PAD, seed=5)  # noqa: E731
    reference = make()
    straight = [reference.next_batch() for _ in range(3 * reference.batches_per_epoch)]
    for k in (
        1,
        reference.batches_per_epoch - 1,
        reference.batches_per_epoch,
        reference.batches_per_epoch + 2,
    ):
        first = make()
        for _ in range(k):
            first.next_batch()
        state = first.state_dict()
        assert all(isinstance(v, int) for v in state.values())
        resumed = make()
        resumed.load_state_dict(state)
        rest = [resumed.next_batch() for _ in range(len(straight) - k)]
        assert _same(rest, straight[k:])


def test_resume_refuses_other_data_or_settings() -> None:
    examples = _examples(10, 8)
    state = ChatBatches(examples, 2, 8, packing=False, pad_id=PAD, seed=0).state_dict()
    with pytest.raises(ConfigError) as err:
        ChatBatches(examples, 3, 8, packing=False, pad_id=PAD, seed=0).load_state_dict(state)
    assert err.value.field == "data.micro_batch"
    other = [Example(e.input_ids, list(e.input_ids)) for e in examples]  # same ids, other labels
    with pytest.raises(ConfigError) as err:
        ChatBatches(other, 2, 8, packing=False, pad_id=PAD, seed=0).load_state_dict(state)
    assert err.value.field == "data.fingerprint"


def test_too_few_examples_for_one_batch() -> None:
    with pytest.raises(ConfigError) as err:
        ChatBatches(_examples(3, 8), 4, 8, packing=False, pad_id=PAD, seed=0)
    assert err.value.field == "micro_batch" and "at most 3" in str(err.value)
    with pytest.raises(ConfigError) as err:  # 6 short examples pack into one row
        ChatBatches([Example([1, 2], [1, 2])] * 6, 2, 16, packing=True, pad_id=PAD, seed=0)
    assert err.value.field == "micro_batch" and "packing off" in str(err.value)
    with pytest.raises(ConfigError) as err:
        ChatBatches([], 1, 8, packing=False, pad_id=PAD, seed=0)
    assert err.value.field == "data"
    with pytest.raises(ValueError):
        ChatBatches([Example(list(range(9)), list(range(9)))], 1, 8, packing=True, pad_id=PAD, seed=0)


def test_encoded_conversations_pack(ours: Any) -> None:
    """End to end: conversations -> examples -> packed rows whose labels decode to the replies."""
    fmt = ChatFormatter(ours)
    convs = [
        [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": f"Hello {i}"}]
        for i in range(8)
    ]
    examples, stats = encode_all(convs, fmt, 64)
    assert stats.examples == 8
    batches = ChatBatches(examples, 2, 64, packing=True, pad_id=ours.pad_token_id, seed=0)
    learned = []
    for batch in _epoch(batches):
        for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
            learned += [t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    text = ours.decode(learned, skip_special_tokens=False)
    assert sorted(text.split("<|im_end|>")[:-1]) == sorted(f"Hello {i}" for i in range(8))


def test_path_independence(tmp_path: Path, ours: Any) -> None:
    """A formatter from the saved folder (what a run exports) renders the same as the in-memory one."""
    from transformers import AutoTokenizer

    ours.save_pretrained(str(tmp_path))
    again = ChatFormatter(AutoTokenizer.from_pretrained(str(tmp_path)))
    assert again.render(CONV) == ChatFormatter(ours).render(CONV)
