"""run.json as a typed, versioned record (RunMeta, RunKind) and the README's generated schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from canvas_tui.runs_model import RunsTracker
from engine.runs import schema_doc
from engine.runs.meta import RUN_SCHEMA_VERSION, RunKind, RunMeta, field_names
from engine.runs.status import summarize
from engine.runs.store import RunStoreError, create_run, list_runs

REPO = Path(__file__).resolve().parents[1]

#: A value for every field, none of them the default: a field added without a sample here fails
#: the round-trip test, so every new field is exercised.
SAMPLE = {
    "schema": RUN_SCHEMA_VERSION,
    "id": "20261127-120000-000-abcdef01",
    "kind": "finetune",
    "name": "chat-v1",
    "config": {"base": "/models/llama", "lr": 2e-4, "targets": ["q_proj", "v_proj"]},
    "created": "2026-11-27T12:00:00+00:00",
    "host": "gpu-box",
    "status": "stopped",
    "message": "stop requested (SIGTERM)",
    "pid": 4242,
    "pid_start_time": 1764244800.25,
    "pid_start_ticks": 987654,
    "boot_id": "0f0e0d0c-aaaa-bbbb-cccc-000000000001",
    "started": "2026-11-27T12:00:05+00:00",
    "ended": "2026-11-27T13:00:00+00:00",
    "launched": "2026-11-27T12:00:01+00:00",
    "attempts": 2,
    "argv": ["python", "-m", "engine.finetune.worker", "--run-dir", "/runs/x"],
    "resume_argv": ["python", "-m", "engine.finetune.worker", "--run-dir", "{run_dir}", "--resume"],
    "resumed": "2026-11-27T12:30:00+00:00",
    "resumed_from": "crashed",
    "total_steps": 400,
    "nproc": 2,
    "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n",
    "base": "our model (run 2026…, step-000200)",
    "base_source": "/runs/base-run/base",
    "adapter": "adapter",
    "adapter_bytes": 1_234_567,
    "adapter_from": "step-000400",
    "url": "http://127.0.0.1:8000/v1",
    "evals": ["20261127-140000-000-00000001"],
    "slurm_job_id": "4242",
}


def write_raw(run, data: dict) -> None:
    run.run_json.write_text(json.dumps(data), encoding="utf-8")


def test_every_field_round_trips_through_json_and_the_file():
    assert set(SAMPLE) == set(field_names()), "give every RunMeta field a sample value"
    meta = RunMeta.from_json(SAMPLE)
    defaults = RunMeta()
    assert [n for n in field_names() if getattr(meta, n) == getattr(defaults, n)] == ["schema"]
    assert meta.kind is RunKind.FINETUNE and meta.known_kind is RunKind.FINETUNE
    assert meta.to_json() == SAMPLE and list(meta.to_json()) == list(field_names())
    assert json.loads(json.dumps(meta.to_json())) == SAMPLE  # plain JSON: the enum is a string
    run = create_run(RunKind.PRETRAIN, "rt")
    updates = {k: v for k, v in SAMPLE.items() if k != "schema"}
    written = run.update_meta(**updates)
    assert written == run.read_meta() == meta
    assert json.loads(run.run_json.read_text()) == SAMPLE


def test_create_run_writes_every_field_and_the_kind_as_a_plain_string():
    run = create_run("finetune", "ft", {"lr": 1e-4}, resume_argv=["x", "{run_dir}"])
    raw = json.loads(run.run_json.read_text())
    assert list(raw) == list(field_names())
    assert (raw["kind"], raw["name"], raw["status"], raw["attempts"], raw["schema"]) == (
        "finetune",
        "ft",
        "created",
        0,
        RUN_SCHEMA_VERSION,
    )
    meta = run.read_meta()
    assert meta.kind == RunKind.FINETUNE == "finetune" and f"{meta.kind}-x" == "finetune-x"
    assert (meta.id, meta.config, meta.resume_argv) == (run.id, {"lr": 1e-4}, ["x", "{run_dir}"])
    assert RunMeta.from_json(raw) == meta


def test_unknown_fields_of_a_newer_schema_survive_a_rewrite():
    run = create_run(RunKind.PRETRAIN, "future")
    raw = json.loads(run.run_json.read_text())
    newer = {**raw, "schema": RUN_SCHEMA_VERSION + 1, "arena_elo": {"a": 1012.5}, "judges": ["x", 2]}
    write_raw(run, newer)
    meta = run.update_meta(status="stopped", total_steps=9)
    assert meta.extras == {"arena_elo": {"a": 1012.5}, "judges": ["x", 2]}
    after = json.loads(run.run_json.read_text())
    assert after == {**newer, "status": "stopped", "total_steps": 9}  # schema stays the newer one
    meta.extras["arena_elo"]["a"] = 0  # a copy: the record itself is untouched
    assert meta.to_json()["arena_elo"] == {"a": 1012.5}


def test_a_kind_this_version_does_not_know_still_loads_and_lists():
    run = create_run(RunKind.PRETRAIN, "from-the-future")
    write_raw(run, {**json.loads(run.run_json.read_text()), "kind": "arena"})
    meta = run.read_meta()
    assert meta.kind == "arena" and not isinstance(meta.kind, RunKind) and meta.known_kind is None
    assert list_runs() == [run]
    assert (summarize(run).kind, summarize(run).status) == ("arena", "created")
    rows = RunsTracker().scan()
    assert [(r.name, r.kind) for r in rows] == [("from-the-future", "arena")]
    assert run.update_meta(status="finished").kind == "arena"  # rewritten as it was
    assert json.loads(run.run_json.read_text())["kind"] == "arena"


def test_a_misspelled_field_raises_and_leaves_run_json_alone():
    run = create_run(RunKind.PRETRAIN, "typo")
    before = run.run_json.read_text()
    with pytest.raises(ValueError, match=r"no field 'total_step' \(did you mean 'total_steps'\?\)"):
        run.update_meta(total_step=5)
    with pytest.raises(ValueError, match="'pid' must be integer or null, not str"):
        run.update_meta(pid="4242")
    assert run.run_json.read_text() == before
    with pytest.raises(ValueError, match="no field 'colour'"):
        create_run(RunKind.PRETRAIN, "bad-extra", extra={"colour": "red"})
    assert list_runs() == [run]  # the refused run left no directory behind


def test_create_run_refuses_a_kind_it_does_not_know_and_lists_the_kinds():
    for bad in ("train", "data", "Pretrain", ""):
        with pytest.raises(RunStoreError) as err:
            create_run(bad, "x")
        assert f"run kind {bad!r} is not one of pretrain, finetune, eval, serve." == str(err.value)
    assert list_runs() == []
    assert [create_run(k).read_meta().kind for k in RunKind] == list(RunKind)


def test_a_field_of_the_wrong_type_names_the_field_and_the_file():
    run = create_run(RunKind.PRETRAIN, "hand-edited")
    raw = json.loads(run.run_json.read_text())
    write_raw(run, {**raw, "pid": "abc"})
    with pytest.raises(RunStoreError) as err:
        run.read_meta()
    message = str(err.value)
    assert message.startswith(
        f"{run.run_json}: field 'pid' is a string ('abc'), but must be integer or null."
    )
    write_raw(run, {**raw, "config": ["not", "a", "dict"]})
    with pytest.raises(RunStoreError, match="field 'config' is a list"):
        run.read_meta()
    write_raw(run, {**raw, "attempts": True})  # JSON true is not a count
    with pytest.raises(RunStoreError, match="field 'attempts' is a boolean"):
        run.read_meta()
    write_raw(run, [1, 2])
    with pytest.raises(RunStoreError, match="does not hold a JSON object but a list"):
        run.read_meta()
    # A broken run.json is one unreadable row, not a broken listing.
    assert summarize(run).status == "unknown" and "JSON object" in summarize(run).message


def test_harmless_mismatches_are_coerced():
    meta = RunMeta.from_json(
        {"attempts": 2.0, "pid_start_time": 17, "message": None, "config": None, "status": None, "x": 1}
    )
    assert (meta.attempts, meta.pid_start_time, meta.message, meta.config, meta.status) == (
        2,
        17.0,
        "",
        {},
        "unknown",
    )
    assert type(meta.attempts) is int and type(meta.pid_start_time) is float
    with pytest.raises(RunStoreError, match="field 'attempts' is a number"):
        RunMeta.from_json({"attempts": 2.5})
    missing = RunMeta.from_json({})  # an older engine's file: every field at its default
    assert missing == RunMeta() and missing.schema == RUN_SCHEMA_VERSION


def test_readme_schema_block_matches_the_code(tmp_path):
    readme = REPO / "README.md"
    assert schema_doc.current_block(readme) == schema_doc.render(), (
        f"README.md's schema tables are stale: run `{schema_doc.REGENERATE}`"
    )
    rendered = schema_doc.render()
    for name in field_names():
        assert f"| `{name}` |" in rendered
    assert "| `pid` | integer or null |" in rendered
    assert "| `kind` | string (pretrain, finetune, eval, serve) |" in rendered
    assert "| `metric` | **`step`** integer, `loss` number," in rendered


def test_schema_doc_check_and_write(tmp_path, capsys):
    stale = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", stale)
    text = stale.read_text()
    stale.write_text(text.replace("| `pid` | integer or null |", "| `pid` | string |"))
    assert schema_doc.main(["--check", str(stale)]) == 1
    assert (
        "regenerate them with `python -m engine.runs.schema_doc --write README.md`" in capsys.readouterr().err
    )
    assert schema_doc.main(["--write", str(stale)]) == 0
    assert stale.read_text() == text and schema_doc.main(["--check", str(stale)]) == 0
    no_block = tmp_path / "plain.md"
    no_block.write_text("# nothing here\n")
    assert schema_doc.main(["--check", str(no_block)]) == 2
