"""What an evaluation reads and cuts into samples (engine.eval.tasks) and the fine-tune's reply
pair (engine.eval.runner._reply_pair), with a real byte-level BPE and a real chat template.

- The generation task of a pre-training run: the first P tokens of a document are the prompt, the
  true next C tokens the reference (prompt + reference is the document's opening, exactly), taken
  in a seeded order, documents no longer than P skipped.
- The generation task of a fine-tune: every message but the final assistant reply is the prompt,
  that reply the reference.
- Reply perplexity scores exactly the final reply's tokens (and its end-of-turn marker) given the
  whole conversation before it, rendered with the fine-tune's template.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.eval import tasks

DOCS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun all day.",
    "Short.",
    "A list holds values in order; a dict maps keys to values; a set keeps each value once. Naïve café.",
    "def add(a, b): return a + b is a function that adds two numbers and returns their sum quickly.",
    "",
    "Loops walk over lists and dicts, and the break statement leaves the loop at once, as it should.",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    """The fine-tune fixtures' byte-level BPE with our specials and a ChatML template."""
    from transformers import AutoTokenizer

    from tests.finetune_fixtures import tiny_tokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer(tmp_path_factory.mktemp("tok")))


def encode(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def test_seeded_order_is_a_seeded_permutation():
    assert tasks.seeded_order(6, 3) == tasks.seeded_order(6, 3)
    assert sorted(tasks.seeded_order(6, 3)) == list(range(6))
    expected = list(range(6))
    random.Random(3).shuffle(expected)
    assert tasks.seeded_order(6, 3) == expected
    assert tasks.seeded_order(50, 3) != tasks.seeded_order(50, 4)


def test_perplexity_documents_are_the_first_n_of_the_seeded_order_without_blank_ones():
    order = [i for i in tasks.seeded_order(len(DOCS), 7) if DOCS[i].strip()]
    assert tasks.perplexity_documents(DOCS, 3, 7) == order[:3]
    assert 4 not in tasks.perplexity_documents(DOCS, 100, 7)  # the empty document
    assert len(tasks.perplexity_documents(DOCS, 100, 7)) == 5


@pytest.mark.parametrize(("p", "c"), [(6, 5), (10, 40)])
def test_document_samples_prompt_is_the_first_p_tokens_reference_the_true_next_c(tokenizer, p, c):
    samples = tasks.document_samples(
        DOCS,
        3,
        5,
        prompt_tokens=p,
        new_tokens=c,
        encode=lambda text: encode(tokenizer, text),
        decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
    )
    long_enough = [i for i in tasks.seeded_order(len(DOCS), 5) if len(encode(tokenizer, DOCS[i])) > p]
    assert [s.document for s in samples] == long_enough[:3]  # seeded order, short ones skipped
    assert 1 not in [s.document for s in samples] and 4 not in [s.document for s in samples]
    assert [s.index for s in samples] == [0, 1, 2]
    for s in samples:
        ids = encode(tokenizer, DOCS[s.document])
        assert encode(tokenizer, s.prompt) == ids[:p]
        assert s.reference == tokenizer.decode(ids[p : p + c])
        # Byte-level BPE decodes losslessly: prompt + reference is the document's opening, exactly.
        assert DOCS[s.document].startswith(s.prompt + s.reference)
        assert len(s.prompt + s.reference) < len(DOCS[s.document]) or p + c >= len(ids)
        assert s.messages is None


def test_conversation_samples_hold_out_the_final_reply():
    convs = [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        [{"role": "user", "content": "No reply yet"}],  # nothing to score: skipped
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is a set?"},
            {"role": "assistant", "content": "Unique values."},
            {"role": "user", "content": "And a [bold]list[/]?"},
            {"role": "assistant", "content": "Ordered values."},
        ],
        [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "and the user ends"}],
    ]
    samples = tasks.conversation_samples(convs, 10, 0)
    assert sorted(s.document for s in samples) == [0, 2]
    by_doc = {s.document: s for s in samples}
    long = by_doc[2]
    assert long.reference == "Ordered values."
    assert long.messages == convs[2][:-1]
    assert long.prompt == (
        "system: Be brief.\nuser: What is a set?\nassistant: Unique values.\nuser: And a [bold]list[/]?"
    )
    assert by_doc[0].prompt == "user: Hi" and by_doc[0].reference == "Hello!"
    assert len(tasks.conversation_samples(convs, 1, 0)) == 1


def test_reply_pair_is_the_final_reply_given_the_conversation(tokenizer):
    from engine.eval.runner import _reply_pair
    from engine.finetune.chat_format import ChatFormatter

    formatter = ChatFormatter(tokenizer, "auto")
    conv = [
        {"role": "user", "content": "What is a list?"},
        {"role": "assistant", "content": "An ordered collection."},
        {"role": "user", "content": "And a set?"},
        {"role": "assistant", "content": "Unique values, no order."},
    ]
    context, reply = _reply_pair(formatter, conv)
    # The earlier reply is context, not scored; the final one is scored with its end-of-turn marker
    # (what the fine-tune's loss labels), conditioned on the template's assistant header.
    assert tokenizer.decode(reply) == "Unique values, no order.<|im_end|>"
    assert tokenizer.decode(context) == (
        "<|im_start|>user\nWhat is a list?<|im_end|>\n"
        "<|im_start|>assistant\nAn ordered collection.<|im_end|>\n"
        "<|im_start|>user\nAnd a set?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids, _ = formatter._tokens(conv)
    assert ids[: len(context) + len(reply)] == context + reply
    with pytest.raises(ValueError, match="final reply"):
        _reply_pair(formatter, conv[:1])


def test_data_documents_read_the_spec_and_a_folder_needs_data(tmp_path: Path):
    from engine.config.errors import ConfigError

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("first line\nsecond line\n")
    # The data-spec grammar's text loader keeps each line's break (the bytes scored are the file's).
    assert tasks.data_documents(f"{corpus}?sample_by=line") == ["first line\n", "second line\n"]
    texts = tasks.texts_for({"kind": "hf", "label": "x"}, f"{corpus}?sample_by=line")
    assert texts.source == f"data:{corpus}?sample_by=line" and not texts.chat
    with pytest.raises(ConfigError) as refused:
        tasks.texts_for({"kind": "hf", "label": "./folder"}, None)
    assert refused.value.field == "data" and "--data" in refused.value.message
