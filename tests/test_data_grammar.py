"""The shared data-spec grammar: its pieces, and the pre-training and chat specs reading it alike."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.config.errors import ConfigError
from engine.data import grammar
from engine.data.spec import parse_spec
from engine.finetune.chat_data.spec import parse_chat_spec

ROOT = Path(__file__).resolve().parent.parent


def error_text(parse, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def test_option_tail_weight_and_column_pieces() -> None:
    assert grammar.split_options("a.jsonl?limit=5&streaming=1") == ("a.jsonl", "limit=5&streaming=1")
    assert grammar.split_options("a.jsonl") == ("a.jsonl", None)
    assert grammar.is_option_list("limit=5&column=") and not grammar.is_option_list("what?")
    assert grammar.parse_options("limit=5&column=body&limit=7") == {"limit": "7", "column": "body"}
    assert grammar.split_weight(" 0.25 * notes.txt") == ("0.25", "notes.txt")
    assert grammar.split_weight("notes*.txt") == (None, "notes*.txt")
    assert grammar.split_column("a.jsonl#body") == ("a.jsonl", "body")
    assert grammar.split_column("dir#1/file.txt") == ("dir#1/file.txt", None)


def test_hub_target_parts_and_defaults() -> None:
    assert grammar.parse_hub_target("hf:allenai/c4:en@validation", "x", "data") == grammar.HubTarget(
        "allenai/c4", "en", "validation"
    )
    assert grammar.parse_hub_target("  HF:gpt2  ", "x", "data") == grammar.HubTarget("gpt2", None, "train")
    assert grammar.is_hub_target(" Hf:x") and not grammar.is_hub_target("hfx.jsonl")


@pytest.mark.parametrize(
    "target",
    ["hf:allenai/c4:en@validation", "hf:OpenAssistant/oasst1", "hf:owner/name@test", "hf:gpt2:wikitext"],
)
def test_both_specs_read_a_hub_target_and_limit_identically(target: str) -> None:
    text = f"{target}?limit=1_000"
    source = parse_spec(text).sources[0]
    chat = parse_chat_spec(text)
    assert (chat.kind, chat.target, chat.config, chat.split, chat.limit) == (
        source.kind,
        source.target,
        source.config,
        source.split,
        source.limit,
    )
    assert chat.limit == 1000


@pytest.mark.parametrize(
    "text",
    [
        "hf:-not a name",  # a bad Hub name
        "hf:bad name@train",
        "embedded?limit=0",  # a limit that is not a positive whole number
        "embedded?limit=many",
        "hf:owner/name?limit=-3",
    ],
)
def test_both_specs_reject_bad_input_with_the_same_message(text: str) -> None:
    pretrain = error_text(parse_spec, text)
    chat = error_text(parse_chat_spec, text)
    assert pretrain == chat
    assert "Fix:" in pretrain


def _private_data_names(path: Path) -> list[str]:
    """``engine.data`` private names a module imports or reaches through a module alias."""
    text = path.read_text(encoding="utf-8")
    if "engine.data" not in text:  # neither import form below can occur: no need to parse it
        return []
    tree = ast.parse(text)
    aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("engine.data"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{node.module}.{alias.name}")
                elif node.module == "engine.data":
                    aliases.add(alias.asname or alias.name)  # a submodule imported by name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("engine.data.") and alias.asname:
                    aliases.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in aliases
            and isinstance(node.args[1], ast.Constant)
            and str(node.args[1].value).startswith("_")
        ):
            found.append(f"{node.args[0].id}.{node.args[1].value}")
    return found


def test_no_module_outside_engine_data_uses_its_private_names() -> None:
    offenders = {}
    for folder in ("engine", "canvas_tui", "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if (ROOT / "engine" / "data") in path.parents:
                continue
            names = _private_data_names(path)
            if names:
                offenders[str(path.relative_to(ROOT))] = names
    assert offenders == {}


def test_the_private_name_check_catches_both_spellings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from engine.data.spec import _build\n"
        "from engine.data import spec as data_spec\n"
        "import engine.data.packing as packing\n"
        "data_spec._OPTIONS_RE\n"
        "monkeypatch.setattr(packing, '_tokenize', None)\n"
        "data_spec.parse_spec\n",
        encoding="utf-8",
    )
    assert sorted(_private_data_names(sample)) == [
        "data_spec._OPTIONS_RE",
        "engine.data.spec._build",
        "packing._tokenize",
    ]
