"""Conversational data for fine-tuning: specs, every row format, every bad input, embedded data, splits."""

from __future__ import annotations

import ast
import json
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from engine.config.errors import ConfigError
from engine.data import sources
from engine.data.embedded import stdlib_root
from engine.finetune import embedded_chat
from engine.finetune.chat_data.conversation import validate_conversation
from engine.finetune.chat_data.formats import detect_format
from engine.finetune.chat_data.load import load_conversations
from engine.finetune.chat_data.sources import check_chat_spec
from engine.finetune.chat_data.spec import FORMATS, PRESETS, ChatDataSpec, describe_source, parse_chat_spec
from engine.finetune.chat_data.split import split_conversations


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


def s(text: str) -> dict:
    return {"role": "system", "content": text}


def error_of(spec: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_conversations(spec)
    return str(info.value)


# --- specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("embedded", ChatDataSpec(kind="embedded", preset="embedded")),
        ("embedded?limit=50", ChatDataSpec(kind="embedded", preset="embedded", limit=50)),
        (
            "guanaco",
            ChatDataSpec(
                kind="hf", target="timdettmers/openassistant-guanaco", format="guanaco", preset="guanaco"
            ),
        ),
        (
            "oasst1?lang=all&limit=10",
            ChatDataSpec(
                kind="hf",
                target="OpenAssistant/oasst1",
                format="oasst",
                lang="all",
                limit=10,
                preset="oasst1",
            ),
        ),
        (
            "guanaco?split=test",
            ChatDataSpec(
                kind="hf",
                target="timdettmers/openassistant-guanaco",
                split="test",
                format="guanaco",
                preset="guanaco",
            ),
        ),
        (
            "hf:org/chats:en@validation",
            ChatDataSpec(kind="hf", target="org/chats", config="en", split="validation"),
        ),
        (
            "data/chats.jsonl?format=sharegpt&column=turns&limit=3",
            ChatDataSpec(kind="local", target="data/chats.jsonl", format="sharegpt", column="turns", limit=3),
        ),
        ("folder?split=test", ChatDataSpec(kind="local", target="folder", split="test")),
    ],
)
def test_spec_parses_and_round_trips(text: str, expected: ChatDataSpec) -> None:
    spec = parse_chat_spec(text)
    assert spec == expected
    assert parse_chat_spec(spec.to_string()) == spec


def test_presets_expand_to_the_hub_datasets_in_their_formats() -> None:
    assert set(PRESETS) == {"embedded", "guanaco", "oasst1"}
    written_out = parse_chat_spec("hf:timdettmers/openassistant-guanaco?format=guanaco")
    assert parse_chat_spec("guanaco") == replace(written_out, preset="guanaco")
    oasst = parse_chat_spec("oasst1")
    assert (oasst.kind, oasst.target, oasst.format, oasst.lang) == (
        "hf",
        "OpenAssistant/oasst1",
        "oasst",
        "en",
    )
    assert parse_chat_spec("guanaco?limit=5").to_string() == "guanaco?limit=5"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("chats.jsonl?colour=red", ["colour", "format, column, split, lang, limit"]),
        ("chats.jsonl?format=xml", ["format='xml'", "messages, sharegpt, guanaco, oasst, alpaca"]),
        ("chats.jsonl?limit=0", ["limit='0'", "positive whole number"]),
        ("chats.jsonl?limit=", ["option limit is empty"]),
        ("guanaco?format=messages", ["always in the guanaco format"]),
        ("embedded?format=messages", ["only the limit option", "format"]),
        ("chats.jsonl?format=sharegpt&lang=de", ["lang= applies only to the oasst format"]),
        ("chats.jsonl?format=alpaca&column=x", ["column= does not apply to the alpaca format"]),
        ("hf:not a name", ["is not a Hub dataset name"]),
        ("   ", ["spec is empty"]),
    ],
)
def test_bad_spec_names_the_problem(text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_chat_spec(text, field_name="finetune.data")
    assert info.value.field == "finetune.data"
    for needle in needles:
        assert needle in str(info.value)


def test_check_catches_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        check_chat_spec(parse_chat_spec(str(tmp_path / "missing.jsonl")))
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot read 'notes.txt' as conversations"):
        check_chat_spec(parse_chat_spec(str(tmp_path / "notes.txt")))
    check_chat_spec(parse_chat_spec("embedded"))  # nothing to check, nothing raised


def test_describe_source_names_what_and_licence() -> None:
    assert "PSF-2.0" in describe_source("embedded")
    line = describe_source("guanaco?limit=100")
    assert "timdettmers/openassistant-guanaco" in line and "Apache-2.0" in line and "first 100" in line
    assert "OpenAssistant/oasst1" in describe_source(parse_chat_spec("oasst1"))
    assert "\n" not in describe_source("hf:org/chats@test")


# --- formats -------------------------------------------------------------------------------------

GUANACO_ROWS = [
    {"text": "### Human: What is 2+2?### Assistant: 4.### Human: And 3+3? ### Assistant:  6. "},
    {"text": "### Human: Name a colour.### Assistant: Blue."},
]
GUANACO_EXPECTED = [
    [u("What is 2+2?"), a("4."), u("And 3+3?"), a("6.")],
    [u("Name a colour."), a("Blue.")],
]


def oasst_row(mid: str, parent: str | None, role: str, text: str, **extra: object) -> dict:
    row = {
        "message_id": mid,
        "parent_id": parent,
        "role": role,
        "text": text,
        "lang": "en",
        "rank": None,
        "deleted": False,
        "review_result": True,
        "message_tree_id": "t",
    }
    row.update(extra)
    return row


OASST_ROWS = [
    oasst_row("r1", None, "prompter", "Q1"),
    oasst_row("a1", "r1", "assistant", "worse answer", rank=1),
    oasst_row("a2", "r1", "assistant", "best answer", rank=0),
    oasst_row("a0", "r1", "assistant", "deleted answer", rank=0, deleted=True),
    oasst_row("p1", "a2", "prompter", "follow-up", rank=0),
    oasst_row("a5", "p1", "assistant", "unranked reply"),
    oasst_row("a3", "p1", "assistant", "failed review", rank=0, review_result=False),
    oasst_row("a4", "p1", "assistant", "second answer", rank=0),
    oasst_row("p2", "a4", "prompter", "trailing question"),
    oasst_row("r2", None, "prompter", "Frage", lang="de"),
    oasst_row("d1", "r2", "assistant", "Antwort"),
    oasst_row("r3", None, "prompter", "never answered"),
    oasst_row("r4", None, "prompter", "Q4"),
    oasst_row("b2", "r4", "assistant", "tie, later id"),
    oasst_row("b1", "r4", "assistant", "tie, first id"),
]
OASST_EN = [
    [u("Q1"), a("best answer"), u("follow-up"), a("second answer")],
    [u("Q4"), a("tie, first id")],
]
OASST_ALL = [OASST_EN[0], [u("Frage"), a("Antwort")], OASST_EN[1]]

SHAREGPT_ROWS = [
    {
        "id": "x",
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Goodbye."},
        ],
    }
]
SHAREGPT_EXPECTED = [[s("Be brief."), u("Hi"), a("Hello!"), u("Bye"), a("Goodbye.")]]

ALPACA_ROWS = [
    {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
    {"instruction": "Say hi.", "input": "", "output": "Hi!"},
]
ALPACA_EXPECTED = [[u("Translate to French.\n\ncat"), a("chat")], [u("Say hi."), a("Hi!")]]

MESSAGES_ROWS = [
    {"system": "You are terse.", "messages": [u(" Hi "), a("Hello.")]},
    {"messages": [u("Q"), a("A"), u("Q2"), a("A2")], "system": ""},
]
MESSAGES_EXPECTED = [[s("You are terse."), u("Hi"), a("Hello.")], [u("Q"), a("A"), u("Q2"), a("A2")]]

SAMPLES = {
    "guanaco": (GUANACO_ROWS, GUANACO_EXPECTED),
    "oasst": (OASST_ROWS, OASST_EN),
    "sharegpt": (SHAREGPT_ROWS, SHAREGPT_EXPECTED),
    "alpaca": (ALPACA_ROWS, ALPACA_EXPECTED),
    "messages": (MESSAGES_ROWS, MESSAGES_EXPECTED),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_converts_to_the_exact_conversations(tmp_path: Path, fmt: str) -> None:
    rows, expected = SAMPLES[fmt]
    path = write_jsonl(tmp_path / "chats.jsonl", rows)
    assert load_conversations(f"{path}?format={fmt}") == expected
    assert load_conversations(str(path)) == expected  # detected from the first row


def test_oasst_language_filter(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "oasst.jsonl", OASST_ROWS)
    assert load_conversations(f"{path}?format=oasst&lang=all") == OASST_ALL
    assert load_conversations(f"{path}?format=oasst&lang=de") == [[u("Frage"), a("Antwort")]]


@pytest.mark.parametrize(
    ("row", "column", "expected"),
    [
        ({"messages": [u("x")]}, None, ("messages", "messages")),
        ({"conversations": [{"from": "human", "value": "x"}]}, None, ("sharegpt", "conversations")),
        ({"conversations": [u("x")]}, None, ("messages", "conversations")),
        ({"turns": [{"from": "gpt", "value": "x"}]}, "turns", ("sharegpt", "turns")),
        ({"text": "### Human: x### Assistant: y"}, None, ("guanaco", "text")),
        ({"body": "### Human: x### Assistant: y"}, "body", ("guanaco", "body")),
        (OASST_ROWS[0], None, ("oasst", "text")),
        ({"instruction": "x", "output": "y"}, None, ("alpaca", "")),
        ({"prompt": "x", "response": "y"}, None, None),
        ({"text": "plain prose"}, None, None),
    ],
)
def test_detect_format(row: dict, column: str | None, expected: tuple[str, str] | None) -> None:
    assert detect_format(row, column) == expected


def test_column_names_the_field_and_limit_takes_the_first(tmp_path: Path) -> None:
    rows = [{"chat": [u(f"q{i}"), a(f"a{i}")]} for i in range(5)]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    assert load_conversations(f"{path}?column=chat&limit=2") == [[u("q0"), a("a0")], [u("q1"), a("a1")]]


def test_json_array_parquet_and_folder_of_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "a.json").write_text(json.dumps(ALPACA_ROWS, indent=2), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(ALPACA_ROWS[:1]), tmp_path / "set" / "b.parquet")
    (tmp_path / "set" / "README.txt").write_text("not data", encoding="utf-8")
    assert load_conversations(str(tmp_path / "set")) == [*ALPACA_EXPECTED, ALPACA_EXPECTED[0]]
    single = tmp_path / "one.json"
    single.write_text(json.dumps(MESSAGES_ROWS[0], indent=2), encoding="utf-8")
    assert load_conversations(str(single)) == MESSAGES_EXPECTED[:1]


def test_hub_format_folder_loads_through_datasets(tmp_path: Path) -> None:
    folder = tmp_path / "oasst1-copy"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "train.jsonl", OASST_ROWS)
    write_jsonl(folder / "data" / "validation.jsonl", OASST_ROWS[9:11])
    assert load_conversations(f"{folder}?format=oasst") == OASST_EN
    assert load_conversations(str(folder)) == OASST_EN
    assert load_conversations(f"{folder}?split=validation&lang=de") == [[u("Frage"), a("Antwort")]]


# --- validation ----------------------------------------------------------------------------------

VALID = {"messages": [u("q"), a("r")]}


@pytest.mark.parametrize(
    ("rows", "option", "needles"),
    [
        (
            [VALID, VALID, {"prompt": "p", "response": "r"}],
            "?format=messages",
            ["line 3 of chats.jsonl has no 'messages' field", "it has 'prompt', 'response'", "?column="],
        ),
        (
            [{"prompt": "p", "response": "r"}],
            "",
            [
                "line 1 of chats.jsonl",
                "does not look like any chat format",
                "'prompt', 'response'",
                "?format=",
            ],
        ),
        (
            [VALID, {"messages": [u("q"), {"role": "bot", "content": "r"}]}],
            "",
            ["message 2 of the conversation at line 2 of chats.jsonl", "'bot'", "system, user, assistant"],
        ),
        (
            [{"messages": [u("q"), a("  ")]}],
            "",
            ["message 2 of the conversation at line 1 of chats.jsonl (assistant) has empty content"],
        ),
        (
            [{"messages": [u("q"), {"role": "assistant", "content": ["part"]}]}],
            "",
            ["message 2 of the conversation at line 1", "content of type list", "not text"],
        ),
        (
            [VALID] * 6 + [{"messages": [u("q"), a("r"), u("and?")]}],
            "",
            ["the conversation at line 7 of chats.jsonl ends with a user turn", "assistant's reply", "Fix:"],
        ),
        (
            [{"messages": [s("sys"), u("q")]}],
            "",
            ["the conversation at line 1 of chats.jsonl has no assistant turn"],
        ),
        (
            [{"messages": [u("q"), s("late"), a("r")]}],
            "",
            ["message 2 of the conversation at line 1", "system message is allowed only first"],
        ),
        (
            [VALID, {"messages": [u("q1"), u("q2"), a("r")]}],
            "",
            ["messages 1 and 2 of the conversation at line 2 of chats.jsonl are both user turns"],
        ),
        (
            [{"messages": [a("r"), u("q"), a("r2")]}],
            "",
            ["line 1 of chats.jsonl starts with an assistant turn"],
        ),
        (
            [{"messages": [u("q"), {"text": "r"}]}],
            "",
            ["message 2 in 'messages' of line 1 of chats.jsonl needs 'role' and 'content'", "it has 'text'"],
        ),
        (
            [{"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "r"}]}],
            "",
            ["message 2 in 'conversations' of line 1", "from 'bot'", "human, user, gpt, assistant, system"],
        ),
        (
            [GUANACO_ROWS[0], {"text": "no markers here"}],
            "?format=guanaco",
            ["field 'text' of line 2 of chats.jsonl has no '### Human:'"],
        ),
        (
            [{"instruction": "x", "input": "y"}],
            "?format=alpaca",
            ["line 1 of chats.jsonl has no 'output' field; it has 'instruction', 'input'"],
        ),
        (
            [oasst_row("r", None, "prompter", "Frage", lang="de"), oasst_row("x", "r", "assistant", "A")],
            "",
            ["gave no conversations", "lang=all"],
        ),
    ],
)
def test_validation_errors_name_the_line_field_and_fix(
    tmp_path: Path, rows: list[dict], option: str, needles: list[str]
) -> None:
    path = write_jsonl(tmp_path / "chats.jsonl", rows)
    message = error_of(f"{path}{option}")
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message


def test_bad_json_line_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(VALID) + "\n{not json\n", encoding="utf-8")
    assert "line 2 is not JSON" in error_of(str(path))
    path.write_text("\n\n", encoding="utf-8")
    assert "gave no conversations" in error_of(str(path))


def test_validate_conversation_returns_clean_messages() -> None:
    raw = [{"role": "user", "content": " q ", "name": "x"}, {"role": "assistant", "content": "r\n"}]
    assert validate_conversation(raw, "test") == [u("q"), a("r")]
    with pytest.raises(ConfigError, match="has no messages"):
        validate_conversation([], "test")


# --- the embedded conversations ------------------------------------------------------------------


def _first_sentence_of(module_file: str, function: str) -> str:
    tree = ast.parse((stdlib_root() / module_file).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    doc = " ".join((ast.get_docstring(node) or "").split())
    return doc.split(". ")[0].replace("``", "`")


def test_embedded_conversations_are_deterministic_valid_and_real() -> None:
    built = embedded_chat.build_conversations()
    embedded_chat._frozen.cache_clear()  # a second, independent build (this test's CANVAS_HOME is empty)
    convs = embedded_chat.embedded_conversations()
    assert convs == built
    assert 2000 <= len(convs) <= 8000
    for i, conv in enumerate(convs):
        assert validate_conversation(conv, f"embedded {i}") == conv
        assert conv[-1]["role"] == "assistant" and len(conv[-1]["content"]) >= 15
    dumps = [c for c in convs if any("`json.dumps`" in m["content"] for m in c if m["role"] == "user")]
    assert len(dumps) == 1
    answer = next(m["content"] for m in dumps[0] if m["role"] == "assistant")
    assert _first_sentence_of("json/__init__.py", "dumps") in answer
    with_system = sum(c[0]["role"] == "system" for c in convs)
    assert 0.1 < with_system / len(convs) < 0.3
    topics = [
        m["content"] for c in convs for m in c if m["role"] == "user" and "`with` statement" in m["content"]
    ]
    assert len(topics) == 1


def test_embedded_signature_turns_match_the_question() -> None:
    convs = embedded_chat.embedded_conversations()
    signed = [c for c in convs if c[-1]["content"].startswith("`") and c[-1]["content"].endswith(")`")]
    assert len(signed) > 100
    for conv in signed:
        name = conv[-4]["content"].split("`")[1]
        assert conv[-1]["content"].startswith(f"`{name}(")
        first_parameter = conv[-1]["content"].split("(", 1)[1].split(",")[0].rstrip(")`")
        assert first_parameter not in ("self", "self=None")


def test_embedded_cache_is_written_and_callers_cannot_corrupt_it(
    canvas_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = embedded_chat.embedded_conversations()
    first[0][0]["content"] = "changed"
    first.clear()
    again = embedded_chat.embedded_conversations()
    assert again and again[0][0]["content"] != "changed"
    embedded_chat._frozen.cache_clear()
    assert embedded_chat.embedded_conversations() == again  # built (this CANVAS_HOME is new) and written
    cached = embedded_chat._cache_path()
    assert cached.is_file() and cached.is_relative_to(canvas_home)
    assert [json.loads(line) for line in cached.read_text(encoding="utf-8").splitlines()] == again

    def no_rebuild() -> None:
        raise AssertionError("the disk cache should have been read")

    embedded_chat._frozen.cache_clear()
    monkeypatch.setattr(embedded_chat, "build_conversations", no_rebuild)
    assert embedded_chat.embedded_conversations() == again


def test_embedded_spec_loads_with_limit() -> None:
    convs = load_conversations("embedded?limit=25")
    assert convs == embedded_chat.embedded_conversations()[:25]


# --- splitting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fraction", "held"),
    [
        (100, 0.05, 5),
        (10, 0.21, 3),
        (10, 0.01, 1),
        (10, 0.0, 0),
        (2, 0.5, 1),
        (2, 0.9, 1),
        (1, 0.5, 0),
        (0, 0.1, 0),
    ],
)
def test_split_sizes(n: int, fraction: float, held: int) -> None:
    convs = [[u(f"q{i}"), a(f"a{i}")] for i in range(n)]
    train, val = split_conversations(convs, fraction, seed=3)
    assert (len(train), len(val)) == (n - held, held)


def test_split_is_deterministic_disjoint_and_keeps_order() -> None:
    convs = [[u(f"q{i}"), a(f"a{i}")] for i in range(200)]
    train, val = split_conversations(convs, 0.1, seed=7)
    assert split_conversations(convs, 0.1, seed=7) == (train, val)
    assert split_conversations(convs, 0.1, seed=8)[1] != val
    ids = [c[0]["content"] for c in train], [c[0]["content"] for c in val]
    assert not set(ids[0]) & set(ids[1]) and len(ids[0]) + len(ids[1]) == 200
    assert ids[1] == sorted(ids[1], key=lambda q: int(q[1:]))
    assert ids[1] != [f"q{i}" for i in range(20)]  # shuffled, not the first 20
    with pytest.raises(ConfigError, match="val_fraction"):
        split_conversations(convs, 1.0, seed=0)


# --- the Hub, offline ----------------------------------------------------------------------------


def test_hub_unreachable_fails_fast_saying_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=1.5: False)
    with pytest.raises(ConfigError, match="this machine is offline") as info:
        check_chat_spec(parse_chat_spec("guanaco"))
    assert "timdettmers/openassistant-guanaco" in str(info.value)
    # Fast: refused without a connection attempt (the Hub's own retries hang 23-46 s offline).
    tried: list[object] = []

    def connect(sock: socket.socket, address: object) -> None:
        tried.append(address)
        raise OSError("this test allows no network")

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(ConfigError, match="offline"):
        load_conversations("hf:nobody/no-such-chats-xyz")
    assert tried == []


def test_hub_cache_miss_with_offline_env_is_explained() -> None:
    message = error_of("oasst1?limit=3")
    assert "'OpenAssistant/oasst1' is not in the local Hugging Face cache" in message
    assert "offline" in message
