"""The sampler's lifecycle (a daemon thread that stops cleanly and promptly with the run, a last
sample at stop), its events against the schema, and the torch-free ``canvas info`` report."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.runs import EventReader, create_run, events, run_context
from engine.telemetry import TelemetrySampler, availability
from engine.telemetry.sampler import THREAD_NAME

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_session():
    run = create_run("pretrain", "telemetry-sampler", {})
    with run_context(run.path, install_signals=False, exit_on_error=False) as session:
        yield session


def records(session) -> list[dict]:
    return EventReader(session.run.events_path).read_new()


def telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_the_thread_stops_promptly_and_is_gone(run_session):
    sampler = TelemetrySampler(run_session, interval=600.0, gpu=False, carbon=False).start()
    time.sleep(0.1)
    assert sampler.running and len(telemetry_threads()) == 1
    assert telemetry_threads()[0].daemon
    # The thread waits on an Event, not a sleep: it is joined long before its 10-minute interval.
    assert sampler.stop(timeout=30.0) is True
    assert not sampler.running and telemetry_threads() == []
    assert sampler.stop() is True  # twice is harmless
    with pytest.raises(RuntimeError, match="already started"):
        sampler.start()


def test_the_last_sample_is_taken_at_stop(run_session):
    with TelemetrySampler(run_session, interval=60.0, gpu=False, carbon=False):
        time.sleep(0.2)
    system = [r for r in records(run_session) if r["type"] == "system"]
    assert len(system) == 2  # at start and at stop, though the interval is a minute
    assert system[-1]["cpu_pct"] is not None


def test_an_exception_in_the_loop_still_stops_the_sampler(run_session):
    with pytest.raises(ZeroDivisionError), TelemetrySampler(run_session, interval=0.05, carbon=False):
        time.sleep(0.1)
        1 / 0  # noqa: B018
    assert telemetry_threads() == []


def test_every_event_fits_the_schema(run_session):
    with TelemetrySampler(run_session, interval=0.05, carbon=False, cuda_peak=lambda: 1) as sampler:
        time.sleep(0.2)
    assert sampler.dropped == 0  # the writer validates every field name
    for record in records(run_session):
        if record["type"] in ("gpu", "system"):
            assert events.decode(record) is not None
            assert set(record) - {"v", "t", "type"} <= set(events.field_names(record["type"]))


def test_a_bad_interval_is_refused(run_session):
    with pytest.raises(ValueError, match="positive"):
        TelemetrySampler(run_session, interval=0)


def test_emits_from_several_threads_do_not_tear_lines(run_session):
    """EventWriter is thread-safe (one os.write a line, under a lock): loop and sampler emit at once."""

    def systems_after_first_metric(got: list[dict]) -> int:
        first = next((i for i, r in enumerate(got) if r["type"] == "metric"), len(got))
        return sum(r["type"] == "system" for r in got[first:])

    def more_wanted(step: int) -> bool:  # the file is read every 500 steps only
        return bool(step % 500) or systems_after_first_metric(records(run_session)) < 3

    # At least 2000 metric lines, and on until the sampler has written 3 system lines among them:
    # a loaded scheduler may starve the sampler's thread for the first 2000 (seen in CI).
    step, deadline = 0, time.monotonic() + 60
    with TelemetrySampler(run_session, interval=0.001, gpu=False, carbon=False):
        while step < 2000 or (more_wanted(step) and time.monotonic() < deadline):
            run_session.emit("metric", step=step, loss=1.0)
            step += 1
    reader = EventReader(run_session.run.events_path)
    got = reader.read_new()
    assert reader.garbage == 0
    metric_steps = [r["step"] for r in got if r["type"] == "metric"]
    assert metric_steps == list(range(step)) and step >= 2000
    assert systems_after_first_metric(got) >= 3  # interleaved with the loop's lines


def test_availability_says_what_is_measured_and_why_not():
    report = availability()
    assert set(report) == {"gpu", "system", "emissions"}
    assert report["system"]["available"] and report["system"]["source"].startswith("psutil ")
    emissions = report["emissions"]
    assert emissions["available"] and emissions["country_default"] == "GBR"
    assert "offline" in emissions["mode"] and emissions["cpu_power"]
    if not report["gpu"]["available"]:
        assert report["gpu"]["reason"] and report["gpu"]["summary"].startswith("unavailable")


def test_canvas_info_reports_telemetry():
    # That it loads neither torch nor codecarbon: tests/test_import_hygiene.py.
    from canvas_tui.commands.info import machine_report

    telemetry = machine_report(False)["telemetry"]
    assert telemetry["emissions"]["source"].startswith("CodeCarbon")
    text = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "info"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=60,
        check=True,
    ).stdout
    assert "telemetry     GPU: " in text and "emissions: CodeCarbon" in text and "system: psutil" in text
