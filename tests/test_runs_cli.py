"""``canvas runs/status/logs/stop/resume/rm`` on prepared run directories (no engine process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from canvas_tui.cli import main
from engine.runs.session import EventWriter
from engine.runs.store import create_run

REPO = Path(__file__).resolve().parents[1]


def canvas(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def finished_run(name: str, steps: int = 5, **meta):
    run = create_run("pretrain", name, {"preset": "tiny"})
    with EventWriter(run.events_path) as w:
        w.emit("status", state="running")
        w.emit("run_info", total_steps=steps, params=1234, precision="bf16", device="cpu")
        for step in range(1, steps + 1):
            w.emit("metric", step=step, loss=3.0 / step, lr=1e-3, tokens_per_s=2500.0, step_time=0.1)
            w.emit("system", cpu_pct=50.0)
        w.emit("checkpoint", step=steps, path="checkpoints/last.pt")
        w.emit("status", state="finished")
    run.log_path.write_text("hello [/bold] from the engine\n")
    run.update_meta(status="finished", total_steps=steps, **meta)
    return run


def test_runs_table_and_json(capsys):
    code, out, _ = canvas(capsys, "runs")
    assert code == 0 and "No runs in" in out
    a = finished_run("first")
    b = finished_run("second", steps=7)
    code, out, _ = canvas(capsys, "runs")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "NAME", "KIND", "STATUS", "STEP", "LOSS", "TOK/S", "AGE"]
    assert lines[1].startswith(b.id) and lines[2].startswith(a.id)  # newest first
    assert lines[1].split()[1:7] == ["second", "pretrain", "finished", "7/7", "0.4286", "2.5k"]
    code, out, _ = canvas(capsys, "runs", "--json")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [b.id, a.id]
    assert rows[1] == {
        **rows[1],
        "name": "first",
        "status": "finished",
        "step": 5,
        "total_steps": 5,
        "loss": 0.6,
        "tokens_per_s": 2500.0,
    }


def test_status_of_a_finished_run(capsys):
    run = finished_run("done")
    code, out, _ = canvas(capsys, "status", "done")
    assert code == 0 and "finished" in out and "step 5/5" in out and str(run.path) in out
    code, out, _ = canvas(capsys, "status", run.id, "--json")
    info = json.loads(out)
    assert info["status"] == "finished" and info["resumable"] is False
    assert info["config"] == {"preset": "tiny"}


def test_logs_without_follow_shows_recent_events_and_log_lines(capsys):
    finished_run("quiet")
    code, out, _ = canvas(capsys, "logs", "quiet", "-n", "3")
    assert code == 0
    lines = out.splitlines()
    assert "checkpoint (last) @ step 5" in lines[1] and "status: finished" in lines[2]
    assert lines[-1] == "| hello [/bold] from the engine"
    assert "system:" not in out
    code, out, _ = canvas(capsys, "logs", "quiet", "--telemetry", "--events", "-n", "100")
    assert "system: cpu_pct=50.00" in out and "| hello" not in out
    code, out, _ = canvas(capsys, "logs", "quiet", "--raw", "--events", "-n", "2")
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["checkpoint", "status"]
    code, out, _ = canvas(capsys, "logs", "quiet", "-f")  # already over: history, then how it ended
    assert code == 0 and out.splitlines()[-1].endswith("finished")


def test_naming_errors_are_one_paragraph_with_exit_2(capsys):
    a = finished_run("twin")
    b = finished_run("twin-b")
    b.update_meta(name="twin")  # names are unique now; a store from before may hold twins
    code, _, err = canvas(capsys, "status", "twin")
    assert code == 2 and a.id in err and b.id in err and err.count("\n") == 1
    code, _, err = canvas(capsys, "logs", "2")  # every id starts with the year
    assert code == 2 and "Give more characters" in err
    code, _, err = canvas(capsys, "rm", a.id, "nope")
    assert code == 2 and "no run matches 'nope'" in err and a.path.exists()  # a typo deletes nothing


def test_control_refusals(capsys):
    done = finished_run("done")
    code, _, err = canvas(capsys, "resume", "done")
    assert code == 2 and "finished" in err
    code, _, err = canvas(capsys, "stop", "done")
    assert code == 2 and "not running" in err
    code, _, err = canvas(capsys, "checkpoint", "done")
    assert code == 2 and "not running" in err
    stopped = finished_run("no-resume")
    stopped.update_meta(status="stopped")
    code, _, err = canvas(capsys, "resume", "no-resume")
    assert code == 2 and "no resume command" in err
    stopped.update_meta(resume_argv=[sys.executable, "-c", "pass"])
    code, _, err = canvas(capsys, "resume", "no-resume")
    assert code == 2 and "no checkpoint" in err
    code, _, _ = canvas(capsys, "rm", done.id, "no-resume")
    assert code == 0 and not done.path.exists() and not stopped.path.exists()
