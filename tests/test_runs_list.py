"""The runs list (issue 15): light, sortable, filterable, with notes and tags.

- A light list: each run's numbers come from :mod:`engine.runs.summary` (only new bytes are read; a
  long history is skimmed, decoding a few hundred lines instead of every one), kept in an index
  under the cache folder; finished runs are not read again; an idle list redraws nothing; until
  the first scan is in, the screen says it is scanning.
- The table: sort by any column (keys or a header click, an arrow in the header), ``status:`` and
  ``tag:`` filters with the word filter, last-activity and runtime columns, ``j``/``k``/``g``/``G``
  and Home/End.
- Notes and tags (:mod:`engine.runs.notes`): their own owner-only file, edited from the console,
  shown in the table and in ``canvas runs`` (and ``--json``).
"""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import threading

import pytest
from textual.widgets import DataTable, Input, Static, TextArea

from canvas_tui.app import CanvasApp
from canvas_tui.runs_model import RunsTracker, index_path
from canvas_tui.screens.notes import NotesScreen
from canvas_tui.screens.runs import RunsScreen
from canvas_tui.widgets.footer import CanvasFooter
from engine.runs import EventWriter
from engine.runs import summary as summary_module
from engine.runs.notes import RunNotes, read_notes, write_notes
from engine.runs.summary import EventsSummary
from tests.console_fixtures import FROZEN_NOW, REPO, make_run, screen_text, training
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio


def on_runs(app) -> bool:
    return isinstance(app.screen, RunsScreen) and app.screen.is_mounted


async def loaded(app, pilot) -> RunsScreen:
    await wait_for(pilot, lambda: on_runs(app) and app.screen.scans >= 1, what="the first scan")
    await pilot.pause()
    return app.screen


def names(screen: RunsScreen) -> list[str]:
    return [r.name for r in screen.visible_rows()]


def shown_order(app, wanted: list[str]) -> list[str]:
    """The runs named in ``wanted`` in the order their rows are drawn on screen."""
    lines = screen_text(app).splitlines()
    found = [(i, name) for name in wanted for i, ln in enumerate(lines) if f" {name} " in f"{ln} "]
    return [name for _, name in sorted(found)]


# ------------------------------------------------------------------------------- the summary
def write_long_history(path, steps: int) -> None:
    """A trainer-like stream: run_info, a metric a step, an eval every 100 steps whose best value
    is in the middle (so only reading every eval finds it)."""
    with EventWriter(path) as w:
        w.emit("run_info", total_steps=steps, params=4321, t=1000.0)
        for s in range(1, steps + 1):
            w.emit("metric", step=s, loss=2.0 + 1.0 / s, tokens_per_s=100.0 + s, tokens=s * 64, t=1000.0 + s)
            if s % 100 == 0:
                w.emit("eval", step=s, val_loss=1.25 if s == steps // 2 else 2.5, t=1000.0 + s)
        w.emit("status", state="finished", t=1000.0 + steps + 1)


FIELDS = ("step", "loss", "tokens_per_s", "tokens", "last_val", "best_val", "total_steps", "params")


def test_a_long_history_is_skimmed_to_the_numbers_a_full_read_gives(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    write_long_history(path, 4000)
    assert path.stat().st_size > 4 * summary_module.SKIM_BYTES
    decoded = []
    real_parse = summary_module.parse_line
    monkeypatch.setattr(summary_module, "parse_line", lambda line: decoded.append(1) or real_parse(line))
    skimmed = EventsSummary()
    assert skimmed.update(path)
    assert len(decoded) < 300, f"decoded {len(decoded)} of ~4,000 lines"
    monkeypatch.setattr(summary_module, "SKIM_BYTES", 1 << 40)  # read every line
    full = EventsSummary()
    full.update(path)
    assert [getattr(skimmed, f) for f in FIELDS] == [getattr(full, f) for f in FIELDS]
    assert (skimmed.step, skimmed.best_val, skimmed.last_val, skimmed.params) == (4000, 1.25, 2.5, 4321)
    assert (skimmed.first_t, skimmed.last_t, skimmed.offset) == (1000.0, 5001.0, path.stat().st_size)
    assert 32 <= len(skimmed.spark) <= 128 and skimmed.spark[0] > skimmed.spark[-1]


def test_only_new_bytes_are_read_and_a_replaced_file_is_read_from_its_start(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"v": 1, "t": 1.0, "type": "metric", "step": 1, "loss": 3.0}\n')
    s = EventsSummary()
    assert s.update(path) and (s.step, s.loss, s.offset) == (1, 3.0, path.stat().st_size)
    assert not s.update(path)  # nothing new: nothing read
    with open(path, "ab") as fh:  # a complete line and a torn one (the engine mid-write)
        fh.write(b'{"v": 1, "t": 2.0, "type": "metric", "step": 2, "loss": 2.0}\n{"v": 1, "t": 3.0, "ty')
    assert s.update(path) and (s.step, s.loss, s.last_t) == (2, 2.0, 2.0)
    with open(path, "ab") as fh:
        fh.write(b'pe": "eval", "step": 2, "val_loss": 2.25}\n')
    assert s.update(path) and (s.last_val, s.best_val, s.last_t) == (2.25, 2.25, 3.0)
    # Replaced (another inode) by a shorter file: read again from its start.
    new = tmp_path / "new.jsonl"
    new.write_bytes(b'{"v": 1, "t": 9.0, "type": "metric", "step": 7, "loss": 1.0}\n')
    os.replace(new, path)
    assert s.update(path) and (s.step, s.loss, s.first_t, s.best_val) == (7, 1.0, 9.0, None)
    # Rewritten in place, longer, with other first bytes: read again too.
    path.write_bytes(b'{"v": 1, "t": 5.0, "type": "metric", "step": 50, "loss": 0.5}\n' * 3)
    assert s.update(path) and (s.step, s.first_t, s.offset) == (50, 5.0, path.stat().st_size)


@pytest.mark.parametrize("skim", [False, True], ids=["line-by-line", "skimmed"])
def test_the_summary_reads_decoded_events_like_every_other_reader(tmp_path, monkeypatch, skim):
    """The list's numbers come from decoded events (engine.runs.events.decode_any), not raw
    records: the writer's "nan" is the float it meant (a diverged run says so), a value of the wrong
    kind reads as missing, and a line of a newer event schema is not read as the type of that name."""
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.emit("run_info", total_steps=10, params=99, quantization=4, t=1.0)  # a foreign value
        w.emit("metric", step=3, loss=math.nan, tokens_per_s=5.0, tokens=96, t=2.0)
    with open(path, "ab") as fh:
        fh.write(b'{"v": 1, "t": 3.0, "type": "eval", "step": 3, "val_loss": "low"}\n')
        fh.write(b'{"v": 99, "t": 4.0, "type": "metric", "step": 9, "loss": 0.1, "tokens": 1}\n')
    if skim:
        monkeypatch.setattr(summary_module, "SKIM_BYTES", 0)  # every stretch is skimmed
    s = EventsSummary()
    assert s.update(path)
    assert (s.step, s.tokens, s.tokens_per_s, s.total_steps, s.params) == (3, 96, 5.0, 10, 99)
    assert s.loss is not None and math.isnan(s.loss)
    assert (s.last_val, s.best_val, s.quantization, s.spark) == (None, None, "4", [])
    assert (s.first_t, s.last_t) == (1.0, 3.0)  # the newer line is not this version's metric


def test_finished_runs_are_not_read_again_and_a_new_console_starts_from_the_index(monkeypatch):
    done = make_run("done", total_steps=100, created=FROZEN_NOW - 60, write=training(100))
    make_run("waiting", status="created")
    tracker = RunsTracker()
    first = {r.name: r for r in tracker.scan()}
    assert tracker.read_last_scan == 2 and first["done"].step == 100
    tracker.scan()
    assert tracker.read_last_scan == 1  # only the run that is not final
    with EventWriter(done.events_path) as w:  # a resumed run wrote more
        w.emit("metric", step=101, loss=1.5, tokens_per_s=1.0, t=FROZEN_NOW)
    again = {r.name: r for r in tracker.scan()}
    assert tracker.read_last_scan == 2 and again["done"].step == 101
    tracker.flush()
    index = index_path(None)
    assert stat.S_IMODE(index.stat().st_mode) == 0o600

    def refuse(*args, **kwargs):
        raise AssertionError("an events file was read again")

    monkeypatch.setattr(EventsSummary, "_parse", refuse)
    monkeypatch.setattr(EventsSummary, "_skim", refuse)
    fresh = {r.name: r for r in RunsTracker().scan()}
    assert fresh["done"] == again["done"]


async def test_the_list_says_it_is_scanning_until_the_rows_are_in(monkeypatch):
    for i in range(3):
        make_run(f"run-{i}", write=training(10))
    gate = threading.Event()
    real_scan = RunsTracker.scan

    def slow_scan(self, cancelled=lambda: False):
        gate.wait(20)
        return real_scan(self, cancelled)

    monkeypatch.setattr(RunsTracker, "scan", slow_scan)
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: on_runs(app), what="the runs screen")
        await pilot.pause()
        text = screen_text(app)
        assert "Scanning 3 runs…" in text and "No runs yet" not in text
        # The footer is built once for the burst of binding changes of the screen's opening (focus,
        # resume, focus again), not once per change: three rebuilds of every key before first paint.
        footer = app.screen.query_one(CanvasFooter)
        await wait_for(pilot, lambda: footer.rebuilds > 0, what="the footer")
        await pilot.pause(0.1)
        assert footer.rebuilds == 1
        keys = set(screen_text(app).splitlines()[-1].split())
        assert {"Open", "New", "Filter", "Mark", "Help", "Quit"} <= keys
        gate.set()
        screen = await loaded(app, pilot)
        text = screen_text(app)
        assert "Scanning" not in text and all(f"run-{i}" in text for i in range(3))
        assert screen.query_one("#runs-empty", Static).display is False


async def test_an_idle_list_draws_nothing_again():
    for i in range(4):
        make_run(f"idle-{i}", created=FROZEN_NOW - 7200, write=training(20))
    app = CanvasApp(poll_interval=0.05, clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await loaded(app, pilot)
        table = screen.query_one("#runs-table", DataTable)
        writes = []
        for name in ("clear", "add_row", "update_cell"):
            real = getattr(table, name)
            setattr(
                table, name, lambda *a, _real=real, _name=name, **k: writes.append(_name) or _real(*a, **k)
            )
        start = screen.scans
        await wait_for(pilot, lambda: screen.scans >= start + 4, what="four more scans")
        assert writes == [] and screen.tracker.read_last_scan == 0


# ------------------------------------------------------------------------------- the table
def header_x(table: DataTable, column: str) -> int:
    x = 0
    for col in table.ordered_columns:
        if col.key.value == column:
            return x + 1
        x += col.get_render_width(table)
    raise AssertionError(column)


async def test_sort_by_any_column_with_a_header_click_or_keys():
    make_run("slow", created=FROZEN_NOW - 300, write=training(30))
    make_run("quick", created=FROZEN_NOW - 200, write=training(10))
    make_run("middle", created=FROZEN_NOW - 100, write=training(20))
    app = CanvasApp(poll_interval=0.1, clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(150, 30)) as pilot:
        screen = await loaded(app, pilot)
        table = screen.query_one("#runs-table", DataTable)
        assert names(screen) == ["middle", "quick", "slow"]  # newest first
        await pilot.click("#runs-table", offset=(header_x(table, "step"), 0))
        await pilot.pause()
        assert (screen.sort_column, screen.sort_reverse) == ("step", False)
        assert names(screen) == ["quick", "middle", "slow"]
        assert shown_order(app, ["slow", "quick", "middle"]) == ["quick", "middle", "slow"]
        assert "step▲" in screen_text(app).splitlines()[1]
        await pilot.click("#runs-table", offset=(header_x(table, "step"), 0))  # again: reversed
        await pilot.pause()
        assert names(screen) == ["slow", "middle", "quick"] and "step▼" in screen_text(app).splitlines()[1]
        await pilot.press("greater_than_sign")  # the next column, still descending
        assert (screen.sort_column, screen.sort_reverse) == ("loss", True)
        await pilot.click("#runs-table", offset=(header_x(table, "tok/s"), 0))
        await pilot.pause()
        assert names(screen) == ["quick", "middle", "slow"]  # 8,010, 8,020, 8,030 tokens/s
        await pilot.press("I")
        assert names(screen) == ["slow", "middle", "quick"] and "tok/s▼" in screen_text(app).splitlines()[1]
        await pilot.press("less_than_sign", "less_than_sign")  # back past curve to best
        assert screen.sort_column == "best"
        assert names(screen)[0] == "slow"  # the one run with a validation loss; none sorts last
        await pilot.press("I")
        assert names(screen)[0] == "slow"


async def test_status_filter_works_with_the_word_filter():
    make_run("alpha", status="finished", write=training(5))
    make_run("beta", status="stopped", write=training(5))
    make_run("gamma", status="failed", write=training(5))
    make_run("alpha-two", status="stopped", write=training(5))
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await loaded(app, pilot)
        await pilot.press("slash", *"status", "colon", *"stop")
        assert sorted(names(screen)) == ["alpha-two", "beta"]
        await pilot.press("space", *"alpha")
        assert names(screen) == ["alpha-two"]
        assert "gamma" not in screen_text(app) and "beta" not in screen_text(app)
        field = screen.query_one("#runs-filter", Input)
        field.value = "status:fin,fail"
        await pilot.pause()
        assert sorted(names(screen)) == ["alpha", "gamma"]
        field.value = "status:running"
        await pilot.pause()
        assert names(screen) == [] and "No run matches the filter 'status:running'" in screen_text(app)


async def test_vi_keys_and_home_end_move_the_cursor():
    for i in range(5):
        make_run(f"run-{i}", created=FROZEN_NOW - 100 * (5 - i), write=training(5))
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await loaded(app, pilot)
        table = screen.query_one("#runs-table", DataTable)
        rows = []
        for key in ("G", "k", "k", "g", "j", "end", "home"):
            await pilot.press(key)
            rows.append(table.cursor_row)
        assert rows == [4, 3, 2, 0, 1, 4, 0]
        assert screen.selected_row().name == "run-4"


async def test_last_activity_and_runtime_columns():
    make_run("alpha", created=FROZEN_NOW - 7200, write=training(100))  # events t0 .. t0+101, t0 = now-1h
    app = CanvasApp(poll_interval=0.1, clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(160, 30)) as pilot:
        screen = await loaded(app, pilot)
        row = screen.rows[0]
        assert (row.activity(FROZEN_NOW), row.runtime(FROZEN_NOW)) == (3499.0, 101.0)
        header, line = screen_text(app).splitlines()[1:3]
        assert ("active" in header, "runtime" in header) == (True, True)
        cells = line.split()
        assert cells[-3:] == ["58m", "1m41s", "2h"]  # active, runtime, age


# ------------------------------------------------------------------------------- notes and tags
def test_notes_are_kept_in_their_own_owner_only_file_never_in_run_json():
    run = make_run("noted", write=training(5))
    before = run.run_json.read_bytes()
    saved = write_notes(run.path, "lr too high?\n[bold]not markup[/]", "baseline, lr-sweep #Baseline")
    assert saved == RunNotes("lr too high?\n[bold]not markup[/]", ("baseline", "lr-sweep"))
    assert read_notes(run.path) == saved
    assert stat.S_IMODE(os.stat(run.path / "notes.json").st_mode) == 0o600
    assert run.run_json.read_bytes() == before
    assert sorted(p.name for p in run.path.iterdir() if "notes" in p.name) == ["notes.json"]
    run.update_meta(status="stopped")  # the engine rewrites run.json: the notes stay
    assert read_notes(run.path) == saved
    with pytest.raises(ValueError, match=r"tag 'a/b' has a character a tag cannot hold"):
        write_notes(run.path, "", "fine a/b")
    assert read_notes(run.path) == saved  # a refused edit writes nothing
    (run.path / "notes.json").write_text("{damaged")
    assert read_notes(run.path) == RunNotes()


async def test_notes_and_tags_are_edited_in_the_console_shown_and_filtered():
    alpha = make_run("alpha", created=FROZEN_NOW - 200, write=training(5))
    make_run("beta", created=FROZEN_NOW - 100, write=training(5))
    app = CanvasApp(poll_interval=0.1, clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await loaded(app, pilot)
        table = screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index(alpha.id), animate=False)
        await pilot.press("e")
        modal = await wait_for(pilot, lambda: isinstance(app.screen, NotesScreen) and app.screen)
        await pilot.press(*"base", "space", *"a/b")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is modal and "Not saved: tag 'a/b'" in screen_text(app)
        assert not (alpha.path / "notes.json").exists()
        modal.query_one("#notes-tags", Input).value = "baseline fast"
        modal.query_one("#notes-text").focus()
        modal.query_one("#notes-text", TextArea).text = "first try"
        await pilot.press(*"[/x] ")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: on_runs(app), what="back on the list")
        assert read_notes(alpha.path) == RunNotes("[/x] first try", ("baseline", "fast"))
        await wait_for(pilot, lambda: "baseline fast" in screen_text(app), what="the tags column")
        line = next(ln for ln in screen_text(app).splitlines() if " alpha " in ln)
        assert line.rstrip().endswith("baseline fast")
        await pilot.press("slash")
        screen.query_one("#runs-filter", Input).value = "tag:baseline"
        await pilot.pause()
        assert names(screen) == ["alpha"]


def test_canvas_runs_shows_tags_and_json_has_notes(canvas_home):
    run = make_run("tagged", write=training(5))
    make_run("plain", write=training(5))
    write_notes(run.path, "first try", "baseline")
    env = {**os.environ, "CANVAS_HOME": str(canvas_home)}
    out = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "runs"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    header, *lines = out.stdout.splitlines()
    assert header.split()[-1] == "TAGS"
    assert next(ln for ln in lines if "tagged" in ln).split()[-1] == "baseline"
    out = subprocess.run(
        [sys.executable, "-m", "canvas_tui", "runs", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert (rows["tagged"]["tags"], rows["tagged"]["notes"]) == (["baseline"], "first try")
    assert (rows["plain"]["tags"], rows["plain"]["notes"]) == ([], "")


def test_canvas_runs_decodes_only_the_lines_it_looks_for(tmp_path, monkeypatch):
    """``canvas runs`` reads the end of each events file for the last metric and run_info; lines of
    other types are skipped unparsed, even when run_info is not in that end (a long run)."""
    from engine.runs import reader

    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        for i in range(2000):
            w.emit("gpu", index=0, util=50.0, t=float(i))
        w.emit("metric", step=7, loss=1.5, t=2000.0)
        for i in range(2000):
            w.emit("system", cpu_pct=10.0, t=2001.0 + i)
    decoded = []
    real_parse = reader.parse_line
    monkeypatch.setattr(reader, "parse_line", lambda line: decoded.append(1) or real_parse(line))
    found = reader.last_records(path, ("metric", "run_info"))
    assert found["metric"]["step"] == 7 and "run_info" not in found
    assert len(decoded) == 1


def test_a_damaged_index_is_only_a_cache():
    run = make_run("kept", write=training(30))
    tracker = RunsTracker()
    assert tracker.scan()[0].step == 30
    tracker.flush()
    index = index_path(None)
    data = json.loads(index.read_text())
    data["runs"][run.id]["spark"] = ["not a number"]
    for damaged in (json.dumps(data), "{broken"):
        index.write_text(damaged)
        fresh = RunsTracker()
        (row,) = fresh.scan()
        assert (row.step, fresh.read_last_scan) == (30, 1) and all(isinstance(v, float) for v in row.spark)
