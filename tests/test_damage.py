"""Surviving damage (issue 16): a damaged checkpoint, leftover temporaries, a run directory deleted
under a running engine, and events written by a newer engine. Real tiny runs through the CLI.

All tests here share one CANVAS_HOME (and the session's prepared data cache).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from engine.runs.events import SCHEMA_VERSION, UnknownEvent, decode, decode_any
from engine.runs.format import format_event
from engine.runs.store import RunDir, create_run, resolve_run
from engine.train.layout import MANIFEST_FILE, checkpoint_damage, intact_checkpoint, list_checkpoints
from tests.lifecycle_helpers import canvas, events, finish, last_step
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,  # real training runs through the CLI, damaged and resumed
    # One worker runs the whole module (`--dist loadgroup` in .ci/test): its module-scoped scenario,
    # a run killed and resumed, is built once, not once a worker.
    pytest.mark.xdist_group("damage"),
]

FAST = ["--set", "micro_batch=4", "--set", "seq_len=64", "--set", "log_every=1", "--set", "eval_batches=2"]
SETS = [
    "--set",
    "max_steps=30",
    "--set",
    "checkpoint_every=4",
    "--set",
    "eval_every=10",
    "--set",
    "keep_checkpoints=20",
]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("damage-home")


@pytest.fixture(scope="module")
def module_env(shared_home: Path, prepared_cache: Path):
    """CANVAS_HOME and the prepared data cache for the module-scoped scenario below."""
    from engine.locations import CACHE_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANVAS_HOME", str(shared_home))
        mp.setenv(CACHE_ENV, str(prepared_cache))
        yield shared_home


@pytest.fixture(autouse=True)
def canvas_home(module_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CANVAS_HOME", str(module_env))
    return module_env


def start(*sets: str, name: str) -> RunDir:
    out = canvas("train", *FAST, *sets, "--name", name, "--detach")
    assert out.returncode == 0, out.stderr
    return resolve_run(out.stdout.split()[0])


def losses_by_step(run: RunDir) -> dict[int, float]:
    """The loss of each step; a step redone after a resume keeps its last value."""
    return {r["step"]: r["loss"] for r in events(run, "metric")}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_held(run: RunDir) -> None:
    """``canvas stop`` while the engine is held (SIGSTOP): a CLI start can take longer than the steps
    left to a fast tiny run; released, the engine finds the request at its next step."""
    pid = run.read_meta().pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        out = canvas("stop", run.id)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def damaged_resume(module_env: Path) -> dict:
    """An uninterrupted run, and the same run stopped, its newest checkpoint truncated, leftover
    temporaries planted, then resumed to the end."""
    straight = start(*SETS, name="straight")
    assert finish(straight).state == "finished"

    run = start(*SETS, name="damaged")
    wait_until(lambda: any(c["step"] >= 8 for c in events(run, "checkpoint")), what="a second checkpoint")
    stop_held(run)
    assert finish(run).state == "stopped", "the run finished before it was stopped"
    stopped_at = last_step(run)
    found = list_checkpoints(run.checkpoints_dir)
    (newest_step, newest), (intact_step, _) = found[-1], found[-2]
    assert newest_step == stopped_at and all((p / MANIFEST_FILE).is_file() for _, p in found)
    weights = newest / "model.safetensors"
    with open(weights, "r+b") as fh:  # truncated, as a full disk or a bad copy leaves it
        fh.truncate(weights.stat().st_size // 2)

    # Leftovers of killed attempts: every temporary in checkpoints/, and an old one beside run.json.
    ckpt_file = run.checkpoints_dir / ".last.json.k1ll3d.tmp"
    ckpt_file.write_text("{")
    ckpt_dir = run.checkpoints_dir / f".step-{stopped_at + 1:06d}.4242.tmp"
    ckpt_dir.mkdir()
    (ckpt_dir / "model.safetensors").write_bytes(b"half")
    old_meta = run.path / ".run.json.0ld.tmp"
    old_meta.write_text("{")
    an_hour_ago = time.time() - 3600
    os.utime(old_meta, (an_hour_ago, an_hour_ago))
    fresh_meta = run.path / ".run.json.fr3sh.tmp"  # could be a live writer's: kept
    fresh_meta.write_text("{")

    status = canvas("status", run.id)
    status_json = canvas("status", run.id, "--json")
    resumed = canvas("resume", run.id)
    assert resumed.returncode == 0, resumed.stderr
    assert finish(run).state == "finished"
    return dict(
        straight=straight,
        run=run,
        newest=newest,
        newest_step=newest_step,
        intact_step=intact_step,
        status=status,
        status_json=status_json,
        leftovers=[ckpt_file, ckpt_dir, old_meta],
        fresh=fresh_meta,
    )


def test_truncated_checkpoint_falls_back_to_the_newest_intact_one(damaged_resume):
    d = damaged_resume
    run, straight = d["run"], d["straight"]
    bad = f"{d['newest'].name}/model.safetensors"

    # `canvas status` marks the damaged checkpoint, naming its bad file.
    assert d["status"].returncode == 0, d["status"].stderr
    damaged_lines = [line for line in d["status"].stdout.splitlines() if "DAMAGED" in line]
    assert len(damaged_lines) == 1 and bad in damaged_lines[0], d["status"].stdout
    info = json.loads(d["status_json"].stdout)
    assert [Path(x["path"]).name for x in info["damaged_checkpoints"]] == [d["newest"].name]

    # The resume said which file was bad and which step it resumes from, and started there.
    logs = [e["message"] for e in events(run, "log")]
    assert any("damaged" in m and bad in m for m in logs), logs
    intact_name = f"step-{d['intact_step']:06d}"
    assert any(f"newest intact checkpoint {intact_name}" in m for m in logs), logs
    assert any(m == f"resumed from {intact_name} (step {d['intact_step']})" for m in logs), logs
    assert events(run, "run_info")[-1]["resumed_from"] == d["intact_step"] < d["newest_step"]

    # Every step after the fallback gives the uninterrupted run's loss, bit for bit.
    expected, got = losses_by_step(straight), losses_by_step(run)
    assert sorted(got) == list(range(1, 31))
    assert got == expected
    # Only the truncated checkpoint is damaged; one the run passes again (a step it checkpoints at)
    # is rewritten, never merely pointed at.
    damaged = [p for _, p in list_checkpoints(run.checkpoints_dir) if checkpoint_damage(p) is not None]
    assert damaged in ([], [d["newest"]])
    if d["newest_step"] % 4 == 0:
        assert damaged == []
    for _, path in list_checkpoints(run.checkpoints_dir):
        twin = straight.checkpoints_dir / path.name / "model.safetensors"
        if path not in damaged and twin.is_file():
            assert (path / "model.safetensors").read_bytes() == twin.read_bytes(), path.name
    final_a = (straight.checkpoints_dir / "step-000030" / "model.safetensors").read_bytes()
    final_b = (run.checkpoints_dir / "step-000030" / "model.safetensors").read_bytes()
    assert final_a == final_b


def test_checkpoint_without_manifest_still_counts_as_intact(damaged_resume, tmp_path):
    """Runs written before manifests existed keep loading; a manifest naming a missing file is damage."""
    src = damaged_resume["straight"].checkpoints_dir / "step-000030"
    old = tmp_path / "step-000030"
    shutil.copytree(src, old)
    (old / MANIFEST_FILE).unlink()
    assert checkpoint_damage(old) is None
    # Without a manifest a truncated safetensors file is still caught, by its own header.
    weights = old / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) - 100])
    assert (
        checkpoint_damage(old) == f"{weights} has {len(whole) - 100:,} bytes, its header says {len(whole):,}"
    )
    weights.write_bytes(whole[:4])
    assert checkpoint_damage(old) == f"{weights} is truncated (4 bytes, shorter than its header says)"
    weights.write_bytes(whole)
    shutil.copy(src / MANIFEST_FILE, old / MANIFEST_FILE)
    (old / "trainer.pt").unlink()
    assert checkpoint_damage(old) == f"{old / 'trainer.pt'} is missing"


def test_next_start_removes_temporaries_of_killed_attempts(damaged_resume):
    d = damaged_resume
    assert [p for p in d["leftovers"] if os.path.lexists(p)] == []
    assert d["fresh"].exists()  # a young temporary beside run.json may be a live writer's


def test_engine_stops_within_a_step_when_its_run_directory_is_deleted():
    # A checkpoint every 2 steps: the next one would recreate the folder if the engine went on.
    run = start(
        "--set", "max_steps=5000", "--set", "eval_every=10000", "--set", "checkpoint_every=2", name="doomed"
    )  # fmt: skip
    wait_until(lambda: last_step(run) >= 2, what="two steps")
    pid = run.read_meta().pid
    assert pid and _alive(pid)
    try:
        with open(run.events_path, "rb") as tail:  # still readable once unlinked: what comes after
            tail.seek(0, os.SEEK_END)
            for _ in range(5):  # a checkpoint being written at that instant can race one pass
                shutil.rmtree(run.path, ignore_errors=True)
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(pid), "the engine kept running after its run directory was deleted"
            after = [json.loads(line) for line in tail.read().splitlines() if line.strip()]
        steps = [r["step"] for r in after if r["type"] == "metric"]
        assert len(steps) <= 1, f"the engine went on for steps {steps} after its directory was deleted"
        assert not [r for r in after if r["type"] in ("status", "checkpoint")], after
        time.sleep(1.0)
        assert not os.path.lexists(run.path), "the engine recreated part of its deleted run directory"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_event_of_a_newer_schema_is_shown_as_such_not_misread():
    newer = {"v": SCHEMA_VERSION + 98, "t": 1.0e9, "type": "metric", "step": "7", "loss": 3.5}
    assert decode(newer) is None
    event = decode_any(newer)
    assert isinstance(event, UnknownEvent) and event.newer
    assert format_event(event).startswith(
        f"metric: written by a newer Neural Canvas (event schema v{SCHEMA_VERSION + 98}; this one reads "
        f"v{SCHEMA_VERSION})"
    )

    run = create_run("pretrain", name="from-the-future")
    current = {"v": SCHEMA_VERSION, "t": 1.0e9, "type": "log", "message": "hello", "level": "info"}
    run.events_path.write_text(json.dumps(current) + "\n" + json.dumps(newer) + "\n")
    out = canvas("logs", run.id)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.endswith("info: hello") for line in lines), out.stdout
    newer_lines = [line for line in lines if "written by a newer Neural Canvas" in line]
    assert len(newer_lines) == 1 and "step=7" in newer_lines[0], out.stdout
    assert not any("step 7" in line for line in lines)  # never shown as a metric of this schema


def test_linked_checkpoints_and_checkpoint_files_are_not_followed(tmp_path):
    ckpts, outside = tmp_path / "checkpoints", tmp_path / "outside"
    (ckpts / "step-000004").mkdir(parents=True)
    (ckpts / "step-000004" / "trainer.pt").write_bytes(b"x")
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"y")
    (ckpts / "step-000008").symlink_to(outside, target_is_directory=True)
    assert list_checkpoints(ckpts) == [(4, ckpts / "step-000004")]
    (ckpts / "last.json").write_text(json.dumps({"dir": "step-000008", "step": 8}))
    assert intact_checkpoint(ckpts) == (ckpts / "step-000004", [])  # the link is not a checkpoint
    (ckpts / "step-000004" / "model.safetensors").symlink_to(outside / "model.safetensors")
    bad = ckpts / "step-000004" / "model.safetensors"
    assert checkpoint_damage(ckpts / "step-000004") == f"{bad} is a symbolic link, not a file the run wrote"
    assert intact_checkpoint(ckpts) == (
        None,
        [(ckpts / "step-000004", checkpoint_damage(ckpts / "step-000004"))],
    )


def test_checkpoint_without_manifest_and_unreadable_trainer_state_falls_back(damaged_resume):
    """A run written before manifests existed has no checksums: a corrupt trainer.pt (its size
    unchanged) is found when it is read, and the resume falls back to the previous checkpoint too,
    naming the file and the step, then ends with the uninterrupted run's losses."""
    run = start(*SETS, name="legacy")
    wait_until(lambda: any(c["step"] >= 8 for c in events(run, "checkpoint")), what="a second checkpoint")
    stop_held(run)
    assert finish(run).state == "stopped", "the run finished before it was stopped"
    found = list_checkpoints(run.checkpoints_dir)
    for _, path in found:
        (path / MANIFEST_FILE).unlink()  # as written before manifests existed
    (newest_step, newest), (intact_step, _) = found[-1], found[-2]
    trainer = newest / "trainer.pt"
    trainer.write_bytes(b"\x00" * trainer.stat().st_size)
    assert checkpoint_damage(newest) is None  # nothing to tell without reading it

    resumed = canvas("resume", run.id)
    assert resumed.returncode == 0, resumed.stderr
    assert finish(run).state == "finished", run.log_path.read_text()[-2000:]
    logs = [e["message"] for e in events(run, "log")]
    assert any(f"checkpoint {newest.name} is damaged: {trainer} cannot be read" in m for m in logs), logs
    intact = f"step-{intact_step:06d}"
    assert f"resuming from the newest intact checkpoint {intact} instead (step {intact_step})" in logs
    assert events(run, "run_info")[-1]["resumed_from"] == intact_step < newest_step
    assert losses_by_step(run) == losses_by_step(damaged_resume["straight"])
