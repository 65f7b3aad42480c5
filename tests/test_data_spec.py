"""Data spec parsing: the one grammar shared by the CLI, TOML configs and the console."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from engine.config.errors import ConfigError
from engine.data.spec import DataSpec, SourceSpec, local_files, parse_spec, spec_from_obj, validate_spec


def test_default_is_the_embedded_corpus() -> None:
    for text in (None, "", "  ", "embedded"):
        assert parse_spec(text) == DataSpec((SourceSpec(kind="embedded", preset="embedded"),))


def test_hub_source_with_every_part() -> None:
    (s,) = parse_spec("hf:allenai/c4:en@validation#body?limit=1_000&streaming=1&revision=abc").sources
    assert (s.kind, s.target, s.config, s.split, s.column) == ("hf", "allenai/c4", "en", "validation", "body")
    assert (s.limit, s.streaming, s.revision) == (1000, True, "abc")


def test_readme_mix_preset_expands_to_two_streamed_sources() -> None:
    spec = parse_spec("owt+c4")
    assert [(s.target, s.config, s.limit, s.streaming) for s in spec.sources] == [
        ("Skylion007/openwebtext", None, 250_000, True),
        ("allenai/c4", "en", 250_000, True),
    ]
    assert parse_spec("c4?limit=10").sources[0].limit == 10


def test_local_paths_weights_and_round_trip() -> None:
    spec = parse_spec("0.7*notes/*.md,0.3*data/books.jsonl.zst#body?limit=5&sample_by=paragraph")
    a, b = spec.sources
    assert (a.kind, a.target, a.weight) == ("local", "notes/*.md", 0.7)
    assert (b.target, b.column, b.limit, b.weight, b.sample_by) == (
        "data/books.jsonl.zst",
        "body",
        5,
        0.3,
        "paragraph",
    )
    assert parse_spec(spec.to_string()) == spec
    assert spec_from_obj(spec.to_dict()) == spec


def test_structured_form_from_toml_maps_to_the_same_dataclasses() -> None:
    doc = tomllib.loads(
        """
        [[data.sources]]
        hf = "allenai/c4"
        config = "en"
        limit = 250000
        streaming = true

        [[data.sources]]
        path = "c4"          # a local file literally named c4, not the preset
        column = "body"
        """
    )
    spec = spec_from_obj(doc["data"])
    assert spec.sources[0] == parse_spec("hf:allenai/c4:en?limit=250000&streaming=1").sources[0]
    assert (spec.sources[1].kind, spec.sources[1].target, spec.sources[1].column) == ("local", "c4", "body")
    assert spec_from_obj(["embedded", {"preset": "embedded", "limit": 3}]).sources[1].limit == 3


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0.5*a.txt,b.txt", "weights some sources but not others"),
        ("a.txt?limt=3", "unknown option(s) limt"),
        ("a.txt?limit=-2", "not a positive whole number"),
        ("a.txt?streaming=maybe", "not a yes/no value"),
        ("a.txt?sample_by=word", "sample_by='word'"),
        ("embedded,,a.txt", "empty source between commas"),
        ("0.5*owt+c4", "cannot take one weight"),
        ("0.5*hf:x/y?streaming=1,0.5*embedded", "streams without a limit"),
        ("embedded#body", "takes only limit and weight"),
        ("hf:/bad", "is not a Hub dataset name"),
    ],
)
def test_bad_specs_name_the_problem_and_the_fix(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(text, field_name="--data")
    assert fragment in str(info.value)
    assert "Fix:" in str(info.value)
    assert info.value.field == "--data"


def test_missing_empty_and_unknown_files_fail_cheaply(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        validate_spec(parse_spec(str(tmp_path / "nope.txt")))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"empty \(0 bytes\)"):
        validate_spec(parse_spec(str(tmp_path / "empty.jsonl")))
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(ConfigError, match="its type is not one of"):
        validate_spec(parse_spec(str(tmp_path / "x.docx")))
    with pytest.raises(ConfigError, match="matches no files"):
        validate_spec(parse_spec(str(tmp_path / "*.parquet")))


def test_folders_and_globs_list_supported_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jsonl.gz").write_bytes(b"x")
    (tmp_path / "notes.docx").write_text("ignored in folders")
    (tmp_path / ".hidden.txt").write_text("ignored")
    files = local_files(parse_spec(str(tmp_path)).sources[0])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["b.txt", "sub/a.jsonl.gz"]
