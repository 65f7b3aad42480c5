"""Run ids, run directories, atomic run.json and checkpoints, and naming runs on the command line."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine import locations
from engine.runs.ids import id_time, is_run_id, new_run_id
from engine.runs.store import RunDir, RunStoreError, atomic_path, create_run, list_runs, resolve_run

REPO = Path(__file__).resolve().parents[1]


def test_ids_sort_by_time_and_are_unique_within_one_second():
    t0 = datetime(2026, 11, 27, 12, 0, 0, 1000, tzinfo=timezone.utc)
    t1 = datetime(2026, 11, 27, 12, 0, 0, 2000, tzinfo=timezone.utc)
    t2 = datetime(2026, 11, 28, 0, 0, 0, tzinfo=timezone.utc)
    ids = [new_run_id(t0), new_run_id(t1), new_run_id(t2)]
    assert sorted(ids) == ids and all(is_run_id(i) for i in ids)
    assert id_time(ids[0]) == t0
    # 32 random bits: 200 ids in one millisecond collide with probability ~5e-6. Beyond that,
    # create_run's exclusive mkdir (tested below) makes a collision impossible to act on.
    same_millisecond = {new_run_id(t0) for _ in range(200)}
    assert len(same_millisecond) == 200


def test_runs_created_at_once_get_distinct_private_directories():
    runs: list[RunDir] = []
    lock = threading.Lock()

    def make() -> None:
        for _ in range(10):
            run = create_run("pretrain")
            with lock:
                runs.append(run)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.path for r in runs}) == 40
    assert [r.id for r in list_runs()] == sorted(r.id for r in runs)
    run = runs[0]
    assert run.path.parent == locations.runs_dir()
    assert run.path.stat().st_mode & 0o777 == 0o700
    assert locations.runs_dir().stat().st_mode & 0o777 == 0o700
    assert run.checkpoints_dir.is_dir() and run.events_path.exists() and run.log_path.exists()
    meta = json.loads(run.run_json.read_text())
    for key in ("kind", "name", "config", "created", "host", "pid", "pid_start_time", "status"):
        assert key in meta
    assert meta["status"] == "created" and meta["pid"] is None and meta["kind"] == "pretrain"


def test_name_defaults_and_validation():
    run = create_run("eval")
    assert run.read_meta().name == f"eval-{run.id[-6:]}"
    for bad in ("", "has space", "../up", new_run_id(), "x" * 65):
        if bad:
            with pytest.raises(RunStoreError):
                create_run("pretrain", bad)
    with pytest.raises(RunStoreError, match="kind"):
        create_run("Train Run")


def test_update_meta_is_atomic_and_loses_no_concurrent_update():
    run = create_run("pretrain", "meta")
    keys = ("attempts", "total_steps", "nproc", "adapter_bytes")  # four integer fields

    def bump(key: str) -> None:
        for i in range(30):
            run.update_meta(**{key: i})

    threads = [threading.Thread(target=bump, args=(key,)) for key in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meta = json.loads(run.run_json.read_text())
    assert all(meta[key] == 29 for key in keys)
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_path_for_files_and_directories(tmp_path):
    final = tmp_path / "ckpt" / "last.pt"
    with atomic_path(final) as tmp:
        tmp.write_text("one")
    assert final.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert final.read_text() == "one" and sorted(p.name for p in final.parent.iterdir()) == ["last.pt"]
    folder = tmp_path / "ckpt" / "adapter"
    for text in ("a", "b"):  # a directory replaces the previous one
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            (tmp / "weights").write_text(text)
    assert (folder / "weights").read_text() == "b"
    assert sorted(p.name for p in final.parent.iterdir()) == ["adapter", "last.pt"]


def test_latest_checkpoint_ignores_unfinished_writes():
    run = create_run("pretrain")
    assert run.latest_checkpoint() is None
    (run.checkpoints_dir / "step-1.pt").write_text("x")
    (run.checkpoints_dir / ".last.pt.123.tmp").write_text("half")
    os.utime(run.checkpoints_dir / "step-1.pt", (1, 1))
    (run.checkpoints_dir / "step-2.pt").write_text("x")
    assert run.latest_checkpoint().name == "step-2.pt"


def test_resolve_by_id_prefix_and_name():
    a = create_run("pretrain", "alpha")
    b = create_run("pretrain", "beta")
    assert resolve_run(a.id) == a and resolve_run("beta") == b
    assert resolve_run(b.id[:-2]) == b
    common = next(a.id[:i] for i in range(len(a.id), 0, -1) if b.id.startswith(a.id[:i]))
    with pytest.raises(RunStoreError) as err:
        resolve_run(common)
    assert a.id in str(err.value) and b.id in str(err.value) and "alpha" in str(err.value)
    twin = create_run("pretrain")  # names are unique now; a store from before may hold twins
    twin.update_meta(name="alpha")
    with pytest.raises(RunStoreError, match="2 runs are named 'alpha'") as err:
        resolve_run("alpha")
    assert twin.id in str(err.value)
    with pytest.raises(RunStoreError, match="no run matches 'gamma'"):
        resolve_run("gamma")


def test_list_ignores_strangers_in_the_store():
    run = create_run("pretrain")
    (locations.runs_dir() / "notes.txt").write_text("hi")
    (locations.runs_dir() / "20260101-000000-000-abcdef01").mkdir()  # no run.json
    assert list_runs() == [run]
