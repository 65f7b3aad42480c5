"""Emissions with the real CodeCarbon in offline mode, inside a real detached engine process: energy
and emissions stream and grow while the run goes on, emissions.csv lands in the run directory, no
network call is made, and a resumed run continues the totals. A tracker that fails costs one
warning and nothing else."""

from __future__ import annotations

import csv
import itertools
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.runs import EventReader, create_run, launch_detached, run_context, stop_run, wait_for_end
from engine.telemetry import TelemetrySampler
from engine.telemetry.carbon import (
    TREE_KG_CO2_PER_MONTH,
    CarbonTracker,
    CarbonUnavailable,
    known_country,
    previous_totals,
    tree_months,
)
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]

# A real engine: run_context + the sampler around a "training loop" that keeps one core busy
# (hashlib releases the GIL, as torch ops do). Sockets are disabled so any network attempt by
# CodeCarbon would be recorded in the run's events.
ENGINE = r"""
import hashlib, json, socket, sys, time
attempts = []
def no_network(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError("network disabled by the test")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = no_network
from engine.runs import run_context
from engine.telemetry import TelemetrySampler
with run_context() as session:
    with TelemetrySampler(session, interval=0.5, country="GBR", output_dir=session.run.path):
        data = b"x" * (1 << 20)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not session.stop_requested:
            hashlib.sha256(data).digest()
    session.emit("log", message="network attempts: " + json.dumps(attempts))
"""


def read(run) -> list[dict]:
    return EventReader(run.events_path).read_new()


def carbon_events(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "carbon"]


def samples_after_warning(run) -> int:
    """How many system samples follow the first warning (0 before the warning is written)."""
    records = read(run)
    warnings = [r for r in records if r["type"] == "log" and r["level"] == "warning"]
    return len([r for r in records if r["type"] == "system" and r["t"] > warnings[0]["t"]]) if warnings else 0


def run_until_carbon(run, n: int, timeout: float = 30.0) -> list[dict]:
    """Launch the engine, wait until it has written ``n`` carbon events while still running, stop it."""
    launch_detached(run, [sys.executable, "-c", ENGINE], cwd=REPO)
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    while time.monotonic() < deadline:
        records = read(run)
        assert not [r for r in records if r["type"] == "status" and r["state"] in ("finished", "failed")], (
            run.log_path.read_text(),
            records,
        )
        seen = carbon_events(records)
        if len(seen) >= n:
            break
        time.sleep(0.1)
    assert len(seen) >= n, run.log_path.read_text()
    status = stop_run(run, wait=True, timeout=30)
    assert status.state == "stopped", status
    return seen


def test_energy_and_emissions_stream_and_grow_during_the_run_and_across_a_resume():
    run = create_run("pretrain", "telemetry-carbon", {})
    while_running = run_until_carbon(run, 3)
    first = read(run)
    carbon = carbon_events(first)
    assert len(carbon) >= len(while_running) >= 3
    energy = [c["energy_kwh"] for c in carbon]
    kg = [c["emissions_kg"] for c in carbon]
    assert all(b > a for a, b in itertools.pairwise(energy)), energy
    assert all(b > a for a, b in itertools.pairwise(kg)), kg
    assert all(c["country"] == "GBR" and c["power"] > 0 for c in carbon)
    assert carbon[-1]["trees"] == pytest.approx(kg[-1] / TREE_KG_CO2_PER_MONTH)
    # the carbon figures came before the run ended, not only at the end
    end = next(i for i, r in enumerate(first) if r["type"] == "status" and r["state"] == "stopped")
    assert sum(1 for r in first[:end] if r["type"] == "carbon") >= 3
    assert [r["message"] for r in first if r["type"] == "log" and "network" in r["message"]] == [
        "network attempts: []"
    ]
    assert [r for r in first if r["type"] == "system"]
    assert not [r for r in first if r["type"] == "log" and r["level"] == "warning"], first

    csv_path = run.path / "emissions.csv"
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 1 and rows[0]["country_iso_code"] == "GBR"
    assert float(rows[0]["energy_consumed"]) == pytest.approx(energy[-1], rel=1e-6)

    # a resumed run (a new engine process) continues the totals from emissions.csv
    run_until_carbon(run, 1)
    second = carbon_events(read(run))[len(carbon) :]
    assert second and second[0]["energy_kwh"] > energy[-1] and second[0]["emissions_kg"] > kg[-1]
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2  # one row a process
    assert sum(float(r["energy_consumed"]) for r in rows) == pytest.approx(second[-1]["energy_kwh"], rel=1e-6)
    assert wait_for_end(run, 5).state == "stopped"


@pytest.fixture
def run_session():
    run = create_run("pretrain", "telemetry-carbon-fail", {})
    with run_context(run.path, install_signals=False, exit_on_error=False) as session:
        yield session


def test_a_failing_tracker_is_one_warning_and_the_rest_goes_on(run_session, monkeypatch):
    import codecarbon

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no energy data for you")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Broken)
    with TelemetrySampler(run_session, interval=0.05) as sampler:
        wait_until(lambda: sampler.carbon_reason, 30, what="the carbon tracker's failure reason")
        wait_until(
            lambda: samples_after_warning(run_session.run) >= 3, 30, what="3 system samples after the warning"
        )
    assert "no energy data for you" in sampler.carbon_reason
    records = read(run_session.run)
    warnings = [r for r in records if r["type"] == "log" and r["level"] == "warning"]
    assert len(warnings) == 1 and "emissions are not measured" in warnings[0]["message"]
    assert not carbon_events(records)
    t_fail = warnings[0]["t"]
    assert len([r for r in records if r["type"] == "system" and r["t"] > t_fail]) >= 3


def test_a_tracker_that_swallows_its_failure_is_detected(tmp_path, monkeypatch):
    import codecarbon

    class Silent:  # CodeCarbon's start() catches its own exceptions and only logs them
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Silent)
    with pytest.raises(CarbonUnavailable, match="did not start"):
        CarbonTracker(output_dir=tmp_path).start()
    with pytest.raises(CarbonUnavailable, match="does not exist"):
        CarbonTracker(output_dir=tmp_path / "missing").start()


def test_totals_only_grow_and_include_earlier_attempts(tmp_path):
    (tmp_path / "emissions.csv").write_text(
        "run_id,energy_consumed,emissions,country_iso_code\n"
        "a,0.5,0.1,GBR\n"
        "b,0.25,0.05,GBR\n"
        "c,not-a-number,,GBR\n"
    )
    assert previous_totals(tmp_path / "emissions.csv") == pytest.approx((0.75, 0.15))
    assert previous_totals(tmp_path / "missing.csv") == (0.0, 0.0)
    readings = []
    tracker = CarbonTracker(output_dir=tmp_path, on_reading=readings.append)
    tracker._offset = previous_totals(tmp_path / "emissions.csv")

    def total(kwh: float, kg: float):
        return SimpleNamespace(
            energy_consumed=kwh, emissions=kg, cpu_power=10.0, gpu_power=0.0, ram_power=20.0
        )

    for kwh, kg in ((0.001, 0.0002), (0.001, 0.0002), (0.0005, 0.0001), (0.002, 0.0004)):
        tracker._on_totals(total(kwh, kg))
    assert [(r.energy_kwh, r.emissions_kg) for r in readings] == [
        pytest.approx((0.751, 0.1502)),
        pytest.approx((0.752, 0.1504)),
    ]
    assert readings[-1].power == 30.0
    assert readings[-1].as_event()["trees"] == pytest.approx(0.1504 / (11 / 12))


def test_trees_constant_and_countries():
    assert pytest.approx(11 / 12) == TREE_KG_CO2_PER_MONTH
    assert tree_months(11.0) == pytest.approx(12.0)  # a tree-year absorbs 11 kg
    assert tree_months(1.5) == pytest.approx(1.64, abs=0.01)  # Green Algorithms' worked example
    assert known_country("GBR") is True and known_country("fra") is True
    assert known_country("XXX") is False
