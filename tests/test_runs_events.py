"""The event schema, the writer and the tail reader: whole lines only, garbage counted, history thinned."""

from __future__ import annotations

import dataclasses
import json
import math
import threading

import pytest

from engine.runs import events as ev
from engine.runs.reader import EventReader, LineTail, downsample, last_records, tail_text
from engine.runs.session import EventWriter


def test_every_event_type_is_documented_and_has_the_agreed_fields():
    expected = {
        "status": {"state", "message"},
        "metric": {
            "step",
            "loss",
            "lr",
            "grad_norm",
            "tokens_per_s",
            "samples_per_s",
            "step_time",
            "tokens",
            "epoch",
            "peak_mem",
        },
        "eval": {"step", "val_loss", "perplexity"},
        "checkpoint": {"step", "path", "kind", "val_loss"},
        "log": {"level", "message"},
        "gpu": {
            "index",
            "util",
            "mem_used",
            "mem_total",
            "temp",
            "power",
            "power_limit",
            "sm_clock",
            "proc_mem",
        },
        "system": {"cpu_pct", "ram_used", "ram_total", "rss", "disk_free"},
        "carbon": {"energy_kwh", "emissions_kg", "trees"},
        "progress": {"phase", "done", "total", "unit", "rate", "eta"},
        "run_info": {"config", "params", "precision", "device"},
    }
    for kind, fields in expected.items():
        assert fields <= set(ev.field_names(kind)), kind
        assert (ev.EVENT_TYPES[kind].__doc__ or "").strip(), f"{kind} needs a docstring"


def test_writer_envelope_and_typed_events(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.emit("metric", step=1, loss=2.5)
        w.emit(ev.Checkpoint(step=1, path="checkpoints/last.pt"))
    lines = path.read_bytes().splitlines()
    first, second = (json.loads(x) for x in lines)
    assert first["v"] == ev.SCHEMA_VERSION and first["type"] == "metric" and first["t"] > 0
    assert second == {**second, "type": "checkpoint", "kind": "last", "step": 1}
    assert path.stat().st_mode & 0o777 == 0o600


def test_writer_is_strict_about_known_types_only(tmp_path):
    w = EventWriter(tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match="no field"):
        w.emit("metric", step=1, los=2.0)
    with pytest.raises(ValueError, match="needs field"):
        w.emit("checkpoint", step=1)
    w.emit("data_progress", stage="load", anything=1)  # a type from elsewhere passes untouched
    w.close()


def test_non_finite_and_foreign_numbers_stay_readable(tmp_path):
    class Scalar:  # like a numpy or torch scalar
        def item(self):
            return 1.5

    path = tmp_path / "e.jsonl"
    with EventWriter(path) as w:
        w.emit("metric", step=1, loss=math.nan, grad_norm=math.inf, lr=Scalar())
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert (record["loss"], record["grad_norm"], record["lr"]) == ("nan", "inf", 1.5)


def test_decode_ignores_unknown_types_and_fields():
    e = ev.decode({"v": 1, "t": 1.0, "type": "metric", "step": 3, "loss": 1.0, "future_field": 1})
    assert isinstance(e, ev.Metric) and e.step == 3 and e.lr is None and e.t == 1.0
    # A newer schema may have changed what a field means: not decoded as this schema's metric.
    assert ev.decode({"v": 9, "t": 1.0, "type": "metric", "step": 3, "loss": 1.0}) is None
    assert ev.decode({"type": "from_the_future", "x": 1}) is None
    assert dataclasses.asdict(ev.decode({"type": "gpu", "index": 0}))["util"] is None


def test_reader_tails_by_offset_and_waits_for_a_torn_line(tmp_path):
    path = tmp_path / "e.jsonl"
    reader = EventReader(path)
    assert reader.read_new() == []  # not created yet
    with EventWriter(path) as w:
        w.emit("metric", step=1)
    assert [r["step"] for r in reader.read_new()] == [1]
    assert reader.read_new() == []
    line = json.dumps({"v": 1, "t": 2.0, "type": "metric", "step": 2}).encode() + b"\n"
    with open(path, "ab") as fh:
        fh.write(line[:10])  # half a line, as a reader may see mid-write
        fh.flush()
        assert reader.read_new() == [] and reader.garbage == 0
        fh.write(line[10:])
    assert [r["step"] for r in reader.read_new()] == [2]
    # A second reader continues from a saved offset.
    with EventWriter(path) as w:
        w.emit("metric", step=3)
    assert [r["step"] for r in EventReader(path, reader.offset).read_new()] == [3]


def test_garbage_lines_are_counted_never_fatal(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(
        b'{"type":"metric","step":1}\nnot json\n[1,2]\n{"no_type":1}\n\xff\xfe\n\n{"type":"eval","step":1}\n'
    )
    reader = EventReader(path)
    assert [r["type"] for r in reader.read_new()] == ["metric", "eval"]
    assert reader.garbage == 4


def test_writer_heals_a_torn_tail_left_by_a_crash(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"type":"metric","step":1}\n{"type":"metr')  # killed mid-line
    with EventWriter(path) as w:
        w.emit("metric", step=2)
    reader = EventReader(path)
    assert [r["step"] for r in reader.read_new()] == [1, 2]
    assert reader.garbage == 1


def test_threads_never_interleave_halves_of_lines(tmp_path):
    path = tmp_path / "e.jsonl"
    w = EventWriter(path)
    payload = "x" * 5000  # longer than a pipe buffer's atomic unit, to make interleaving visible

    def spam(i: int) -> None:
        for n in range(200):
            w.emit("log", message=f"{i}:{n}:{payload}")

    threads = [threading.Thread(target=spam, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    reader = EventReader(path)
    assert len(reader.read_new()) == 800 and reader.garbage == 0


def test_file_replaced_by_a_shorter_one_is_read_from_the_start(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"a\nb\nc\n")
    tail = LineTail(path)
    assert tail.read_lines() == [b"a", b"b", b"c"]
    path.write_bytes(b"z\n")
    assert tail.read_lines() == [b"z"]


def test_long_history_is_downsampled_but_keeps_spikes_ends_and_rare_events(tmp_path):
    path = tmp_path / "e.jsonl"
    n = 120_000
    lines = []
    for step in range(n):
        loss = 100.0 if step == 54_321 else 5.0 - step / n
        lines.append(json.dumps({"v": 1, "t": step, "type": "metric", "step": step, "loss": loss}))
        if step % 10_000 == 0:
            lines.append(json.dumps({"v": 1, "t": step, "type": "checkpoint", "step": step, "path": "p"}))
        if step % 50 == 0:
            lines.append(
                json.dumps({"v": 1, "t": step, "type": "gpu", "index": step % 100 // 50, "util": 50.0})
            )
    path.write_text("\n".join(lines) + "\n")
    reader = EventReader(path)
    history = reader.read_history(max_points=1000)
    metrics = [r for r in history if r["type"] == "metric"]
    assert 500 <= len(metrics) <= 1000
    steps = [r["step"] for r in metrics]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == n - 1
    assert 54_321 in steps  # the spike survives
    assert len([r for r in history if r["type"] == "checkpoint"]) == 12
    for index in (0, 1):  # one series per GPU
        assert 2 <= len([r for r in history if r["type"] == "gpu" and r["index"] == index]) <= 1000
    assert reader.offset == path.stat().st_size  # and tailing continues from the end
    assert downsample(metrics[:10], 1000) == metrics[:10]


def test_tail_text_and_last_records_read_from_the_end(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)) + "Traceback: unterminated")
    assert tail_text(log, 3) == ["line 9998", "line 9999", "Traceback: unterminated"]
    assert tail_text(tmp_path / "missing.log", 3) == []
    events = tmp_path / "e.jsonl"
    with EventWriter(events) as w:
        w.emit("run_info", total_steps=100)
        for step in range(1, 50):
            w.emit("metric", step=step, loss=1.0 / step)
            w.emit("gpu", index=0, util=1.0)
    last = last_records(events, ("metric", "run_info", "eval"))
    assert last["metric"]["step"] == 49 and last["run_info"]["total_steps"] == 100
    assert "eval" not in last
