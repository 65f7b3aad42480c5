"""System telemetry with the real psutil: plausible, consistent values, the CUDA-peak callable, and
the low-disk warning (threshold fixed above the real free space, or derived from checkpoints)."""

from __future__ import annotations

import os
import time

import pytest

from engine.runs import EventReader, create_run, run_context
from engine.telemetry import TelemetrySampler
from engine.telemetry.system import DISK_WARN_BYTES, DiskWatch, SystemSampler, largest_checkpoint
from tests.waiting import wait_until


@pytest.fixture
def run_session():
    run = create_run("pretrain", "telemetry-system", {})
    with run_context(run.path, install_signals=False, exit_on_error=False) as session:
        yield session


def events_of(session, kind: str) -> list[dict]:
    return [r for r in EventReader(session.run.events_path).read_new() if r["type"] == kind]


def test_a_snapshot_is_plausible_and_consistent(tmp_path):
    sampler = SystemSampler(tmp_path)
    first = sampler.sample()
    assert first["cpu_pct"] is None and first["proc_cpu_pct"] is None  # a window of microseconds says nothing
    assert 0 < first["ram_used"] <= first["ram_total"]
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:  # keep this process busy for the CPU figures
        sum(i * i for i in range(1000))
    s = sampler.sample()
    assert 0 < s["ram_used"] <= s["ram_total"]
    assert 0 < s["rss"] < s["ram_total"]
    assert 0 <= s["cpu_pct"] <= 100
    assert s["proc_cpu_pct"] > 0
    assert s["disk_free"] == pytest.approx(
        os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize, rel=0.05
    )
    assert s["cuda_peak"] is None


def test_the_cuda_peak_callable_is_reported_and_a_broken_one_is_ignored(run_session):
    with TelemetrySampler(run_session, interval=0.05, gpu=False, carbon=False, cuda_peak=lambda: 123_456):
        wait_until(lambda: len(events_of(run_session, "system")) >= 2, 30, what="a periodic system sample")
    peaks = {e["cuda_peak"] for e in events_of(run_session, "system")}
    assert peaks == {123_456}

    calls = []

    def broken() -> int:
        calls.append(1)
        raise RuntimeError("CUDA not initialised")

    sampler = SystemSampler(run_session.run.path, cuda_peak=broken)
    assert sampler.sample()["cuda_peak"] is None and sampler.sample()["cuda_peak"] is None
    assert len(calls) == 1  # not called again once it failed


def test_low_disk_warns_once_in_the_events_and_engine_log(run_session, capfd):
    with TelemetrySampler(run_session, interval=0.05, gpu=False, carbon=False, disk_warn_bytes=10**18):
        wait_until(lambda: len(events_of(run_session, "system")) >= 3, 30, what="three system samples")
    system = events_of(run_session, "system")
    assert len(system) >= 3 and all(e["disk_free"] > 0 for e in system)
    warnings = [e for e in events_of(run_session, "log") if "low disk space" in e["message"]]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"
    assert str(run_session.run.path) in warnings[0]["message"]
    assert "low disk space" in capfd.readouterr().err  # the session's log line goes to engine.log


def test_no_warning_when_there_is_room(run_session):
    with TelemetrySampler(run_session, interval=0.05, gpu=False, carbon=False, disk_warn_bytes=1):
        wait_until(lambda: len(events_of(run_session, "system")) >= 3, 30, what="three system samples")
    assert not [e for e in events_of(run_session, "log") if "disk" in e["message"]]


def test_the_threshold_grows_with_the_checkpoints_and_rearms_after_recovery(tmp_path):
    watch = DiskWatch(tmp_path)
    assert watch.threshold() == DISK_WARN_BYTES
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    with open(ckpt / "last.pt", "wb") as fh:  # sparse: 3 GiB that take no disk
        fh.truncate(3 * 2**30)
    (ckpt / "adapter").mkdir()
    (ckpt / "adapter" / "weights.safetensors").write_bytes(b"x" * 1000)
    assert largest_checkpoint(ckpt) == 3 * 2**30
    assert watch.threshold() == 6 * 2**30  # room for two more copies
    assert watch.check(5 * 2**30) is not None
    assert watch.check(4 * 2**30) is None  # still low: said once
    assert watch.check(7 * 2**30) is None  # recovered by more than 10%: re-armed
    assert watch.check(5 * 2**30) is not None
    assert watch.check(None) is None
