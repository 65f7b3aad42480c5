"""Issue 16, "Never write or delete outside the store": links the store did not create are refused,
and everything the engine and the CLI create under the home is owner-only.

Each test drives the real CLI (``python -m canvas_tui`` in a subprocess, ``CANVAS_HOME`` = tmp) on a
real run store, with the symbolic links made by the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runs.store import RunDir, create_run

REPO = Path(__file__).resolve().parents[1]


def canvas(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "canvas_tui", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _outside(tmp_path: Path) -> Path:
    """A folder outside the store holding files that must survive."""
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "thesis.txt").write_text("years of work\n")
    return outside


def test_rm_of_a_symlinked_run_directory_refuses_and_deletes_nothing(tmp_path: Path) -> None:
    real = create_run("pretrain", "real-one", {"preset": "tiny"})
    real.update_meta(status="finished")
    outside = _outside(tmp_path)
    shutil.copy(real.run_json, outside / "run.json")  # a folder elsewhere that looks like a run
    fake_id = real.id[:-1] + ("0" if real.id[-1] != "0" else "1")
    link = real.path.parent / fake_id
    link.symlink_to(outside, target_is_directory=True)

    result = canvas("rm", fake_id)

    assert result.returncode != 0
    assert "Deleted run" not in result.stdout
    assert str(link) in result.stderr and "symbolic link" in result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["run.json", "thesis.txt"]
    assert (outside / "thesis.txt").read_text() == "years of work\n"
    assert link.is_symlink()
    # Naming the real run too deletes nothing at all: every run is checked before any is deleted.
    result = canvas("rm", real.id, fake_id)
    assert result.returncode != 0 and real.path.is_dir()
    # A real run directory is still deleted, links inside it as links (their targets stay).
    (real.path / "tb").symlink_to(outside, target_is_directory=True)
    result = canvas("rm", real.id)
    assert result.returncode == 0, result.stderr
    assert f"Deleted run {real.id}." in result.stdout
    assert not real.path.exists()
    assert (outside / "thesis.txt").read_text() == "years of work\n"


STUB = REPO / "tests" / "engine_stub.py"


def _stopped_run_with_checkpoint() -> RunDir:
    """A stopped stub run that `canvas resume` would continue (a checkpoint and a resume command)."""
    argv = [sys.executable, str(STUB), "{run_dir}", "--steps", "3", "--step-time", "0.01"]
    run = create_run("pretrain", None, {"preset": "tiny"}, resume_argv=argv)
    (run.checkpoints_dir / "stub-state.ckpt").write_text('{"step": 1}')
    run.update_meta(status="stopped")
    return run


def _pretend_running(run: RunDir) -> subprocess.Popen[bytes]:
    """Record a live process (which ignores the control signals) as the run's engine."""
    from engine.runs.process import identify
    from tests.waiting import wait_until

    code = (
        "import signal, time\n"
        "for s in (signal.SIGUSR1, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    identity = wait_until(lambda: identify(proc.pid), what="the pretend engine")
    run.update_meta(status="running", **identity.as_meta())
    return proc


def test_a_symlinked_control_directory_is_never_written_or_deleted_in(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    (outside / "stop").write_text("someone else's file\n")
    before = {p.name: p.read_text() for p in outside.iterdir()}

    live = create_run("pretrain", None, {"preset": "tiny"})
    (live.path / "control").symlink_to(outside, target_is_directory=True)
    proc = _pretend_running(live)
    try:
        for command in ("checkpoint", "stop"):
            result = canvas(command, live.id)
            assert result.returncode != 0, result.stdout
            assert str(live.path / "control") in result.stderr and "symbolic link" in result.stderr
            assert {p.name: p.read_text() for p in outside.iterdir()} == before
        assert proc.poll() is None  # no signal was sent either: the refusal comes first
    finally:
        proc.kill()
        proc.wait()

    stopped = _stopped_run_with_checkpoint()
    (stopped.path / "control").symlink_to(outside, target_is_directory=True)
    meta = stopped.read_meta()
    result = canvas("resume", stopped.id)
    assert result.returncode != 0, result.stdout
    assert str(stopped.path / "control") in result.stderr and "symbolic link" in result.stderr
    assert {p.name: p.read_text() for p in outside.iterdir()} == before
    after = stopped.read_meta()  # refused before anything changed: no attempt, no "starting"
    assert (after.status, after.attempts, after.pid) == ("stopped", meta.attempts, None)


def test_a_symlinked_events_file_is_never_appended_to(tmp_path: Path) -> None:
    from engine.runs.session import EventWriter, run_context
    from engine.runs.store import RunStoreError

    outside = _outside(tmp_path)
    target = outside / "thesis.txt"

    stopped = _stopped_run_with_checkpoint()
    stopped.events_path.unlink()
    stopped.events_path.symlink_to(target)
    result = canvas("resume", stopped.id)
    assert result.returncode != 0, result.stdout
    assert str(stopped.events_path) in result.stderr and "symbolic link" in result.stderr
    assert target.read_text() == "years of work\n"
    assert stopped.read_meta().status == "stopped"

    # The engine side: its writer and its run context refuse the link, naming it.
    try:
        EventWriter(stopped.events_path)
    except RunStoreError as exc:
        assert str(stopped.events_path) in str(exc)
    else:
        raise AssertionError("EventWriter opened a symbolic link")
    try:
        with run_context(stopped.path, install_signals=False, exit_on_error=False) as session:
            session.emit("log", message="outside!")
    except RunStoreError as exc:
        assert str(stopped.events_path) in str(exc)
    else:
        raise AssertionError("run_context accepted a symbolic link as events.jsonl")
    assert target.read_text() == "years of work\n"
    meta = stopped.read_meta()
    assert meta.status == "failed" and str(stopped.events_path) in meta.message


def _world_or_group_accessible(root: Path) -> list[str]:
    """Every file and folder under ``root`` (links not followed) that anyone but the owner may use."""
    loose = []
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(top) / name
            mode = path.lstat().st_mode
            if not path.is_symlink() and mode & 0o077:
                loose.append(f"{oct(mode & 0o777)} {path.relative_to(root)}")
    return sorted(loose)


@pytest.mark.slow  # a real pre-training (data prepared in a fresh home) and a QLoRA fine-tune
def test_everything_a_tiny_run_and_a_fine_tune_create_under_the_home_is_owner_only(
    canvas_home: Path, tmp_path: Path, monkeypatch
) -> None:
    """A fresh home (data cache inside it), a real tiny pre-training run and a real QLoRA fine-tune
    through the CLI, under the usual 022 umask: not one file or folder is group/world accessible."""
    from tests.finetune_fixtures import tiny_base, tiny_tokenizer

    home = canvas_home / "home"  # created by the CLI itself, parents included
    monkeypatch.setenv("CANVAS_HOME", str(home))
    base = tiny_base(tmp_path / "base" / "llama", tiny_tokenizer(tmp_path / "base" / "tok"))
    old = os.umask(0o022)
    try:
        train = canvas(
            "train",
            *("--set", "max_steps=2", "--set", "micro_batch=4", "--set", "seq_len=64"),
            *("--set", "eval_every=2", "--set", "eval_batches=1", "--set", "log_every=1"),
            "--name",
            "walked",
            timeout=600,
        )
        assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
        finetune = canvas(
            "finetune",
            *("--base", str(base), "--data", "embedded?limit=40"),
            *("--set", "max_steps=2", "--set", "seq_len=96", "--set", "micro_batch=2"),
            *("--set", "eval_every=2", "--set", "eval_batches=1", "--set", "lora_r=4"),
            "--name",
            "walked-ft",
            timeout=600,
        )
        assert finetune.returncode == 0, finetune.stdout[-2000:] + finetune.stderr[-2000:]
    finally:
        os.umask(old)
    run_dirs = [p for p in (home / "runs").iterdir() if p.is_dir()]
    assert len(run_dirs) == 2
    for run in run_dirs:  # what the issue found 0644/0755 is there, so the walk covers it
        names = {p.name for p in run.iterdir()}
        assert {"run.json", "events.jsonl", "engine.log", "checkpoints"} <= names, names
    assert any((run / "tb").is_dir() for run in run_dirs)
    assert any(p.name == "tokenizer.json" for p in (home / "cache").rglob("*"))  # the data cache
    assert _world_or_group_accessible(home) == []
    assert home.stat().st_mode & 0o777 == 0o700


def test_an_engine_inside_another_process_also_creates_owner_only_files() -> None:
    """`canvas demo` and the console run the engine in their own process: inside run_context the
    umask is 077 (files a library writes, such as TensorBoard's, are owner-only), and restored after."""
    from engine.runs.session import run_context

    run = create_run("pretrain", None, {"preset": "tiny"})
    old = os.umask(0o022)
    try:
        with run_context(run, install_signals=False, exit_on_error=False):
            (run.path / "tb").mkdir()
            (run.path / "tb" / "events.out").write_text("scalars\n")
            (run.path / "emissions.csv").write_text("kg\n")
        assert os.umask(0o022) == 0o022  # the caller's umask is back
    finally:
        os.umask(old)
    assert (run.path / "tb").stat().st_mode & 0o777 == 0o700
    assert (run.path / "tb" / "events.out").stat().st_mode & 0o777 == 0o600
    assert (run.path / "emissions.csv").stat().st_mode & 0o777 == 0o600
    assert run.read_meta().status == "finished"
