"""Typed events for every reader and the one formatter: decode through the reader, unknown types
and fields tolerated, torn and foreign lines, format_event's exact words, and `canvas logs`."""

from __future__ import annotations

import json
import math

import pytest

from canvas_tui.cli import main
from engine.runs import events as ev
from engine.runs.format import format_event, format_line, skipped_note
from engine.runs.reader import EventReader, downsample, last_events
from engine.runs.session import EventWriter
from engine.runs.status import summarize
from engine.runs.store import create_run

GIB = 2**30

#: One event of every known type, as an engine writes it, and what ``format_event`` shows for it
#: (with ``total_steps=10``).
EVERY_TYPE: list[tuple[ev.Event, str]] = [
    (ev.Status(state="running", message="pid 4242 on testhost"), "status: running: pid 4242 on testhost"),
    (ev.Status(state="finished"), "status: finished"),
    (
        ev.Metric(step=5, loss=0.6, lr=1e-3, grad_norm=0.5, tokens_per_s=2500.0, step_time=0.1),
        "step 5/10  loss 0.6000  lr 0.001  grad 0.500  2.5k tok/s  0.100 s/step",
    ),
    (ev.Metric(step=3, loss=math.nan), "step 3/10  loss nan"),
    (
        ev.Eval(step=10, val_loss=1.2345, perplexity=3.4366, metrics={"rouge": 0.25}),
        "eval @ step 10: validation loss 1.2345 (perplexity 3.44)  rouge 0.2500",
    ),
    (ev.Checkpoint(step=5, path="checkpoints/last.pt"), "checkpoint (last) @ step 5 -> checkpoints/last.pt"),
    (
        ev.Checkpoint(step=20, path="checkpoints/best", kind="best", val_loss=1.5),
        "checkpoint (best) @ step 20 -> checkpoints/best (val_loss 1.5000)",
    ),
    (ev.Log(message="disk almost full", level="warning"), "warning: disk almost full"),
    (ev.Log(message="plain [/bold] text"), "info: plain [/bold] text"),
    (
        ev.Progress(phase="tokenize", done=50, total=200, unit="MB", eta=65),
        "tokenize: 50/200 MB (25%), eta 1m05s",
    ),
    (
        ev.RunInfo(
            params=1234567, precision="bf16", precision_reason="cpu has bf16", device="cpu", total_steps=12
        ),
        "run: 1,234,567 params, bf16 (cpu has bf16), 12 steps on cpu",
    ),
    (
        ev.RunInfo(
            params=172352,
            trainable_params=32768,
            base="tiny-owt",
            quantization="4bit nf4",
            precision="bf16",
            device="cuda:0",
            total_steps=40,
            resumed_from=20,
        ),
        "run: base tiny-owt (4bit nf4), 172,352 params, 32,768 trainable (19.01%), bf16, 40 steps on "
        "cuda:0, resumed from step 20",
    ),
    (
        ev.Gpu(index=0, util=80.0, mem_used=10 * GIB, mem_total=80 * GIB, temp=62.0),
        "gpu0: util=80.00 mem_used=10.0GiB mem_total=80.0GiB temp=62.00",
    ),
    (ev.Gpu(index=-1, reason="no NVIDIA driver"), "gpu: unavailable (no NVIDIA driver)"),
    (
        ev.System(cpu_pct=50.0, ram_used=3 * GIB, ram_total=16 * GIB),
        "system: cpu_pct=50.00 ram_used=3.0GiB ram_total=16.0GiB",
    ),
    (
        ev.Carbon(energy_kwh=0.0123, emissions_kg=0.0045, trees=0.2, country="FRA"),
        "carbon: energy_kwh=0.0123 emissions_kg=0.0045 trees=0.2000 country=FRA",
    ),
]


def write(path, *events: ev.Event) -> None:
    with EventWriter(path) as w:
        for event in events:
            w.emit(event)


def test_every_type_decodes_through_the_reader_to_the_event_written(tmp_path):
    path = tmp_path / "events.jsonl"
    written = [event for event, _ in EVERY_TYPE]
    write(path, *written)
    reader = EventReader(path)
    got = reader.read_events()
    assert [type(e) for e in got] == [type(e) for e in written]
    for before, after in zip(written, got, strict=True):
        assert isinstance(after.t, float) and after.t > 0  # the writer's envelope time
        after.t = None
        if isinstance(before, ev.Metric) and before.loss is not None and math.isnan(before.loss):
            assert isinstance(after, ev.Metric) and math.isnan(after.loss)  # "nan" on disk
            continue
        assert after == before
    assert reader.skipped == 0 and reader.read_events() == []


def test_unknown_types_fields_and_values_are_tolerated(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [
        {"v": 1, "t": 5.0, "type": "metric", "step": 7, "loss": "inf", "future_field": 1, "lr": "fast"},
        {"v": 1, "t": 6.0, "type": "chat_turn", "role": "user", "text": "hi"},
        {"v": 1, "type": "log", "message": "no level", "level": None},
        {"v": 1, "type": "checkpoint", "path": "x"},  # a required field missing
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    metric, unknown, log, ckpt = EventReader(path).read_events()
    assert isinstance(metric, ev.Metric) and (metric.step, metric.loss, metric.lr) == (7, math.inf, None)
    assert not hasattr(metric, "future_field") and metric.t == 5.0
    assert isinstance(unknown, ev.UnknownEvent) and unknown.type == "chat_turn" and unknown.t == 6.0
    assert unknown.record == lines[1] and ev.to_record(unknown) == lines[1]
    assert format_event(unknown) == "chat_turn: role=user text=hi"
    assert isinstance(log, ev.Log) and log.level == "info"  # a null reads as the default
    assert isinstance(ckpt, ev.Checkpoint) and ckpt.step is None and ckpt.kind == "last"
    assert ev.decode(lines[1]) is None  # decode() itself still says "not mine" with None
    # No dict-style access: a reader still written against raw records fails loudly.
    assert not hasattr(metric, "get")
    with pytest.raises(TypeError):
        metric["step"]  # type: ignore[index]


def test_a_torn_last_line_is_never_parsed_and_is_read_once_complete(tmp_path):
    path = tmp_path / "events.jsonl"
    whole = json.dumps({"v": 1, "t": 1.0, "type": "eval", "step": 4, "val_loss": 2.5}).encode()
    path.write_bytes(whole[:17])  # the engine is half-way through the line (or was killed there)
    reader = EventReader(path)
    assert reader.read_events() == [] and reader.skipped == 0
    with open(path, "ab") as fh:
        fh.write(whole[17:])
    assert reader.read_events() == [] and reader.skipped == 0  # still no newline
    with open(path, "ab") as fh:
        fh.write(b"\n")
    assert reader.read_events() == [ev.Eval(step=4, val_loss=2.5, t=1.0)]
    assert reader.read_events() == [] and reader.skipped == 0


def test_foreign_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "events.jsonl"
    write(path, ev.Metric(step=1, loss=1.0))
    with open(path, "ab") as fh:
        fh.write(b'Traceback (most recent call last):\n[1, 2]\n{"type": 3}\n\xff\xfe\n\n')
    write(path, ev.Metric(step=2, loss=0.5))
    reader = EventReader(path)
    assert [e.step for e in reader.read_events()] == [1, 2]  # type: ignore[attr-defined]
    assert reader.skipped == 4 and reader.garbage == 4  # the blank line is not a bad line
    assert skipped_note(reader.skipped) == "skipped 4 unreadable lines in events.jsonl"
    assert skipped_note(1) == "skipped 1 unreadable line in events.jsonl" and skipped_note(0) is None


@pytest.mark.parametrize(("event", "text"), EVERY_TYPE, ids=[t.split(":")[0] for _, t in EVERY_TYPE])
def test_format_event_says_each_type_in_one_plain_line(event, text):
    assert format_event(event, total_steps=10 if isinstance(event, ev.Metric) else None) == text


def test_format_event_keeps_untrusted_text_on_one_plain_line():
    hostile = ev.Log(message="line one\nline two \x1b[2J[@click=app.quit]x[/]", level="error")
    assert format_event(hostile) == "error: line one\ufffdline two \ufffd[2J[@click=app.quit]x[/]"
    assert format_line(ev.Status(state="stopped")) == "--:--:--  status: stopped"
    assert format_event(ev.Metric(step=7)) == "step 7  loss -"


def test_downsample_and_last_events_work_on_typed_events(tmp_path):
    path = tmp_path / "events.jsonl"
    spike = 500
    events: list[ev.Event] = [ev.RunInfo(total_steps=3000)]
    events += [ev.Metric(step=s, loss=50.0 if s == spike else 1.0) for s in range(1, 3001)]
    events += [ev.Eval(step=3000, val_loss=0.9), ev.Status(state="finished")]
    write(path, *events)
    typed = EventReader(path).read_event_history(max_points=100)
    records = EventReader(path).read_history(max_points=100)
    assert [e.type for e in typed] == [r["type"] for r in records]  # the same events survive
    metrics = [e for e in typed if isinstance(e, ev.Metric)]
    assert len(metrics) <= 102 and metrics[0].step == 1 and metrics[-1].step == 3000
    assert spike in [m.step for m in metrics]
    assert isinstance(typed[-1], ev.Status) and typed[-1].state == "finished"
    assert downsample(events, 100)[0] is events[0]  # objects kept, not copied
    last = last_events(path, (ev.Metric, ev.Eval, ev.Checkpoint))
    assert set(last) == {ev.Metric, ev.Eval}
    assert isinstance(last[ev.Metric], ev.Metric) and last[ev.Metric].step == 3000  # type: ignore[attr-defined]


def fixture_run(name: str = "decode"):
    run = create_run("pretrain", name, {"preset": "tiny"})
    with EventWriter(run.events_path) as w:
        w.emit("status", state="running", message="pid 1 on here", t=1000.0)
        w.emit("run_info", total_steps=3, params=1234, precision="bf16", device="cpu", t=1001.0)
        for step in (1, 2, 3):
            w.emit("metric", step=step, loss=3.0 / step, lr=1e-3, tokens_per_s=2500.0, t=1001.0 + step)
            w.emit("gpu", index=0, util=50.0, t=1001.0 + step)
        w.emit("eval", step=3, val_loss=1.25, perplexity=math.exp(1.25), t=1005.0)
        w.emit("from_the_future", anything=1, t=1005.5)
        w.emit("log", message="almost done [/x]", level="warning", t=1006.0)
        w.emit("checkpoint", step=3, path="checkpoints/last.pt", t=1007.0)
        w.emit("status", state="finished", t=1008.0)
    run.update_meta(status="finished", total_steps=3)
    run.log_path.write_text("")
    return run


def test_canvas_logs_prints_each_shown_event_with_the_one_formatter(capsys):
    run = fixture_run()
    expected = [
        format_line(e, 3)
        for e in EventReader(run.events_path).read_events()
        if not isinstance(e, (ev.Gpu, ev.System, ev.Carbon, ev.UnknownEvent))
    ]
    assert main(["logs", run.id, "--events", "-n", "100"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == expected and out.err == ""
    assert len(expected) == 9 and expected[-2].endswith("checkpoint (last) @ step 3 -> checkpoints/last.pt")
    assert any(line.endswith("  step 2/3  loss 1.5000  lr 0.001  2.5k tok/s") for line in expected)
    # --raw prints the lines as written, a type this console does not know included.
    assert main(["logs", run.id, "--events", "--raw", "-n", "100"]) == 0
    raw = [json.loads(x)["type"] for x in capsys.readouterr().out.splitlines()]
    assert "from_the_future" in raw and "gpu" not in raw  # telemetry only with --telemetry


def test_canvas_logs_reports_unreadable_lines_once_on_stderr(capsys):
    run = fixture_run("torn")
    with open(run.events_path, "ab") as fh:
        fh.write(b"not json\n" * 3 + b'{"half": \n')
    assert main(["logs", run.id, "--events", "-n", "100"]) == 0
    out = capsys.readouterr()
    assert out.err.splitlines() == ["skipped 4 unreadable lines in events.jsonl"]
    assert out.out.splitlines()[-1].endswith("status: finished")
    assert main(["logs", run.id, "--events", "-f"]) == 0  # the follow path says it once too
    assert capsys.readouterr().err.splitlines() == ["skipped 4 unreadable lines in events.jsonl"]


def test_train_follow_output_uses_the_formatter_and_notes_skipped_lines(capsys):
    from canvas_tui.commands.train import follow

    run = fixture_run("follow")
    with open(run.events_path, "ab") as fh:
        fh.write(b"garbage\n")
    import io

    stream = io.StringIO()
    assert follow(run, stream) == 0
    lines = stream.getvalue().splitlines()
    assert "run: 1,234 params, bf16, 3 steps on cpu" in lines
    assert "eval @ step 3: validation loss 1.2500 (perplexity 3.49)" in lines
    assert "checkpoint (last) @ step 3 -> checkpoints/last.pt" in lines
    assert "warning: almost done [/x]" in lines
    assert capsys.readouterr().err.splitlines() == ["skipped 1 unreadable line in events.jsonl"]


def test_summary_of_a_non_finite_loss_stays_json(capsys):
    run = create_run("pretrain", "nan", {})
    write(run.events_path, ev.RunInfo(total_steps=9), ev.Metric(step=4, loss=math.nan, tokens_per_s=10.0))
    summary = summarize(run)
    assert (summary.step, summary.total_steps, summary.loss, summary.tokens_per_s) == (4, 9, "nan", 10.0)
    json.loads(json.dumps(summary.as_dict(), allow_nan=False))
