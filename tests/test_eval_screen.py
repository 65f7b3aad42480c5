"""The Evaluation screen: comparison table, sorting, arena ratings, sample browser, launch form.

The evaluation runs are real run directories (the run store's ``create_run`` with kind ``eval``)
holding ``results.json`` and ``samples.jsonl`` written by hand in the shapes of issue 14, so the
screen finds them as it finds an engine's. Snapshots at 80x24 and 120x40 in the three themes use
fixed run ids and creation times, and no cursor blinks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import ColumnKey

from canvas_tui.app import CanvasApp
from canvas_tui.eval_model import (
    EvalTracker,
    ModelRow,
    Value,
    fmt_metric,
    parse_results,
    sample_rows,
    sort_rows,
)
from canvas_tui.screens.eval_launch import EvalLaunchScreen
from canvas_tui.screens.eval_samples import EvalSamplesScreen
from canvas_tui.screens.evaluation import EvaluationScreen
from engine.runs.store import list_runs
from tests.console_fixtures import FROZEN_NOW, HOSTILE, fake_checkpoint, make_run, screen_text
from tests.waiting import pilot_wait_until

pytestmark = pytest.mark.anyio


EVAL_OLD = "20261127-090000-000-0000e001"
EVAL_NEW = "20261127-113000-000-0000e002"
RUN_P = "20261127-100000-000-0000aaaa"
RUN_Q = "20261127-100500-000-0000bbbb"
BLEU_SIG = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
VERDICT = "owt-small better on ROUGE-L by 0.041, 95% CI [0.02, 0.06]"


def metric(value: float, lo: float | None = None, hi: float | None = None) -> dict:
    return {"value": value, "ci95": None if lo is None else [lo, hi]}


def model_entry(
    label: str, run_id: str | None, bpb: float, ci: tuple[float, float], rouge_l: float, **extra
) -> dict:
    ppl = 2**bpb * 3.1
    entry = {
        "label": label,
        "model": label,
        "checkpoint": "best",
        "adapter": None,
        "run_id": run_id,
        "kind": "pretrain",
        "tokenizer": "bpe-4096",
        "window": 256,
        "tokens_per_s": 5123.0,
        "documents": 20,
        "tokens": 10240,
        "bytes": 40960,
        "metrics": {
            "perplexity": metric(ppl, ppl - 0.5, ppl + 0.5),
            "word_perplexity": metric(ppl * 4, ppl * 4 - 2, ppl * 4 + 2),
            "byte_perplexity": metric(2**bpb, 2**bpb - 0.02, 2**bpb + 0.02),
            "bits_per_byte": metric(bpb, *ci),
            "rouge1": metric(rouge_l + 0.05, rouge_l + 0.02, rouge_l + 0.08),
            "rouge2": metric(rouge_l - 0.2, rouge_l - 0.22, rouge_l - 0.18),
            "rougeL": metric(rouge_l, rouge_l - 0.032, rouge_l + 0.058),
            "rougeLsum": metric(rouge_l, rouge_l - 0.03, rouge_l + 0.03),
            "bleu": metric(12.5 + rouge_l, 10.0, 15.0 + rouge_l),
            "chrf": metric(30.25, 28.0, 32.5),
            "chrf_pp": metric(28.5, 26.5, 30.5),
        },
        "bleu_signature": BLEU_SIG,
        "chrf_signature": CHRF_SIG,
    }
    entry.update(extra)
    return entry


SETTINGS = {
    "data": "embedded?limit=200",
    "samples": 4,
    "tasks": ["perplexity", "generation"],
    "seed": 0,
    "prompt_tokens": 32,
    "continuation_tokens": 32,
    "sampling": {"temperature": 0.0, "top_k": None, "top_p": None, "max_new_tokens": 32},
    "n_bootstrap": 1000,
}

#: B (owt-small) − A (tiny-owt) on rougeL per sample: 0.3, -0.2, 0.5 (the hostile one), 0.0.
SAMPLES = [
    ("The cat", "sat on the mat", {"tiny-owt": ("sat down", 0.2), "owt-small": ("sat on a mat", 0.5)}),
    ("Once upon", "a time there was", {"tiny-owt": ("a time there", 0.6), "owt-small": ("the hill", 0.4)}),
    ("Say", "hello", {"tiny-owt": ("bye", 0.1), "owt-small": (HOSTILE, 0.6)}),
    ("A list", "keeps order", {"tiny-owt": ("keeps it", 0.3), "owt-small": ("keeps them", 0.3)}),
]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def eval_run(run_id: str, name: str, created: float, models: list[dict], comparisons=(), samples=None):
    run = make_run(
        name, kind="eval", run_id=run_id, created=created, config={"models": [m["label"] for m in models]}
    )
    results = {"schema": 1, "settings": SETTINGS, "models": models, "comparisons": list(comparisons)}
    (run.path / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if samples is not None:
        write_jsonl(run.path / "samples.jsonl", samples)
    return run


@pytest.fixture
def evals():
    """Two finished evaluations: the newer compares two runs (with samples and a verdict), the
    older has one model whose label is hostile markup."""
    samples = []
    for i, (prompt, reference, outs) in enumerate(SAMPLES):
        samples.append(
            {
                "index": i,
                "task": "generation",
                "source": "embedded",
                "prompt": prompt,
                "reference": reference,
                "outputs": {label: text for label, (text, _) in outs.items()},
                "scores": {
                    label: {
                        "rouge1": s,
                        "rouge2": s / 2,
                        "rougeL": s,
                        "rougeLsum": s,
                        "chrf": 100 * s,
                        "bleu": 50 * s,
                    }
                    for label, (_, s) in outs.items()
                },
            }
        )
    new = eval_run(
        EVAL_NEW,
        "eval-owt",
        FROZEN_NOW - 1800,
        [
            model_entry("tiny-owt", RUN_P, 1.234, (1.184, 1.284), 0.412),
            model_entry("owt-small", RUN_Q, 1.1, (1.05, 1.19), 0.453),
        ],
        comparisons=[
            {
                "a": "tiny-owt",
                "b": "owt-small",
                "metric": "rougeL",
                "difference": 0.041,
                "ci95": [0.02, 0.06],
                "p_value": None,
                "verdict": VERDICT,
            }
        ],
        samples=samples,
    )
    old = eval_run(
        EVAL_OLD, "eval-old", FROZEN_NOW - 7200, [model_entry(HOSTILE, None, 1.5, (1.4, 1.6), 0.3)]
    )
    return new, old


def app(theme: str | None = None) -> CanvasApp:
    made = CanvasApp(clock=lambda: FROZEN_NOW, poll_interval=60.0)
    if theme is not None:
        made.theme = theme
    return made


async def open_evaluation(pilot) -> EvaluationScreen:
    await pilot.press("E")
    screen = await pilot_wait_until(
        pilot,
        lambda: pilot.app.screen if isinstance(pilot.app.screen, EvaluationScreen) else None,
        what="the Evaluation screen",
    )
    await pilot_wait_until(
        pilot, lambda: screen.scans >= 1 and screen.arena is not None, what="the first evaluation scan"
    )
    await pilot.pause(0.1)
    return screen


async def open_launch_form(pilot, *, loaded: bool = True) -> EvalLaunchScreen:
    """``n`` on the Evaluation screen: the launch form, with its runs listed unless ``loaded`` is
    False (a test that types before the list arrives)."""
    await pilot.press("n")
    form = await pilot_wait_until(
        pilot,
        lambda: pilot.app.screen if isinstance(pilot.app.screen, EvalLaunchScreen) else None,
        what="the launch form",
    )
    if loaded:
        await pilot_wait_until(pilot, lambda: form.loaded, what="the runs")
    return form


def table_keys(table: DataTable) -> list[str]:
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


def cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


# ------------------------------------------------------------------------------------ view model
def test_fmt_metric_symmetric_and_lopsided():
    assert fmt_metric(Value(1.234, 1.184, 1.284)) == "1.234 ±0.05"
    assert fmt_metric(Value(0.412, 0.38, 0.47)) == "0.41 [0.38, 0.47]"
    assert fmt_metric(Value(28.5, 26.5, 30.5)) == "28.50 ±2"
    assert fmt_metric(Value(5123.0)) == "5123"
    assert fmt_metric(None) == "-"


def test_sort_rows_direction_per_metric(evals):
    snapshot = EvalTracker().scan()
    rows = snapshot.rows
    labels = lambda rs: [r.label for r in rs]  # noqa: E731
    assert labels(rows) == ["tiny-owt", "owt-small", HOSTILE]  # newest evaluation first
    assert labels(sort_rows(rows, "bits_per_byte")) == ["owt-small", "tiny-owt", HOSTILE]  # lower first
    assert labels(sort_rows(rows, "bits_per_byte", reverse=True)) == [HOSTILE, "tiny-owt", "owt-small"]
    assert labels(sort_rows(rows, "rougeL")) == ["owt-small", "tiny-owt", HOSTILE]  # higher first
    bare = ModelRow("k", "x", "x", None, None, "", None, "e", "e", "", "", {})
    assert labels(sort_rows([bare, *rows], "rougeL"))[-1] == "x"  # missing values always last


def test_parse_results_skips_malformed_entries():
    view = parse_results(
        {
            "models": [
                {"label": "ok", "metrics": {"bits_per_byte": {"value": "nan"}, "bleu": {"value": 3.0}}},
                7,
            ]
        },
        eval_id="e",
        eval_name="e",
        path="/x",
    )
    assert [r.label for r in view.rows] == ["ok"]
    assert set(view.rows[0].metrics) == {"bleu"}


def test_sample_rows_sort_by_difference(evals):
    from canvas_tui.eval_model import read_samples

    samples = read_samples(evals[0].path / "samples.jsonl")

    def order(sort: str) -> list[int]:
        return [r.sample.index for r in sample_rows(samples, "tiny-owt", "owt-small", "rougeL", sort)]

    assert order("diff-desc") == [2, 0, 3, 1]
    assert order("diff-asc") == [1, 3, 0, 2]
    assert order("index") == [0, 1, 2, 3]
    diffs = [r.difference for r in sample_rows(samples, "tiny-owt", "owt-small", "rougeL")]
    assert diffs == pytest.approx([0.5, 0.3, 0.0, -0.2])


# ------------------------------------------------------------------------------------ the screen
async def test_table_shows_the_numbers_of_results_json(evals):
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        table = screen.query_one("#eval-table", DataTable)
        assert table_keys(table) == [f"{EVAL_NEW}:0", f"{EVAL_NEW}:1", f"{EVAL_OLD}:0"]
        assert cell(table, f"{EVAL_NEW}:0", "bits_per_byte") == "1.234 ±0.05"
        assert cell(table, f"{EVAL_NEW}:1", "bits_per_byte") == "1.10 [1.05, 1.19]"
        assert cell(table, f"{EVAL_NEW}:0", "rougeL") == "0.41 [0.38, 0.47]"
        assert cell(table, f"{EVAL_NEW}:1", "chrf") == "30.25 ±2.2"
        assert cell(table, f"{EVAL_NEW}:0", "tokens_per_s") == "5123"
        assert cell(table, f"{EVAL_NEW}:0", "model") == "tiny-owt @best"
        # A hostile label is drawn literally (clipped), not interpreted.
        assert cell(table, f"{EVAL_OLD}:0", "model").startswith("[bold red]not bold[/]")
        assert "reply_perplexity" not in [c.value for c in table.columns]  # no model has it
        # The selected model's signatures and the evaluation's verdict are on screen.
        text = screen_text(pilot.app)
        assert BLEU_SIG in text and CHRF_SIG in text
        assert VERDICT in text


async def test_sorting_by_bits_per_byte_then_reversing(evals):
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        table = screen.query_one("#eval-table", DataTable)
        await pilot.press("s")  # the first metric column: bits per byte, lower first
        assert screen.sort_key == "bits_per_byte"
        assert table_keys(table) == [f"{EVAL_NEW}:1", f"{EVAL_NEW}:0", f"{EVAL_OLD}:0"]
        assert str(table.columns[ColumnKey("bits_per_byte")].label) == "bpb ↓ ▼"
        await pilot.press("r")
        assert table_keys(table) == [f"{EVAL_OLD}:0", f"{EVAL_NEW}:0", f"{EVAL_NEW}:1"]
        await pilot.press("r", "s")  # the next column: token perplexity
        assert screen.sort_key == "perplexity"
        assert table_keys(table)[0] == f"{EVAL_NEW}:1"


async def test_sample_browser_shows_hostile_output_literally_and_sorts(evals):
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        await pilot.press("enter")  # the first row: tiny-owt of the newer evaluation
        browser = await pilot_wait_until(
            pilot,
            lambda: pilot.app.screen if isinstance(pilot.app.screen, EvalSamplesScreen) else None,
            what="the sample browser",
        )
        await pilot_wait_until(pilot, lambda: browser.loaded, what="the samples")
        await pilot.pause(0.1)
        assert (browser.a, browser.b, browser.metric) == ("tiny-owt", "owt-small", "rougeL")
        table = browser.query_one("#samples-table", DataTable)
        assert table_keys(table) == ["2", "0", "3", "1"]  # B − A largest first
        assert cell(table, "2", "diff") == "+0.500"
        assert cell(table, "1", "diff") == "-0.200"
        # The highlighted sample (the hostile output) is shown literally: markup not applied.
        text = screen_text(pilot.app)
        assert "[bold red]not bold[/]" in text
        assert "[@click=app.quit]x[/]" in text
        await pilot.press("s")
        assert table_keys(table) == ["1", "3", "0", "2"]
        await pilot.press("s")
        assert table_keys(table) == ["0", "1", "2", "3"]
        await pilot.press("2")  # B cycles to tiny-owt too: every difference is 0
        assert browser.b == "tiny-owt"
        assert {cell(table, k, "diff") for k in "0123"} == {"+0.000"}
        await pilot.press("escape")
        assert pilot.app.screen is screen


async def test_sample_browser_without_samples_and_a_damaged_results_file(evals):
    (make_run("eval-broken", kind="eval", created=FROZEN_NOW).path / "results.json").write_text("{not json")
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        assert screen.snapshot.errors and "eval-broken" not in [v.eval_name for v in screen.snapshot.results]
        assert "cannot read results.json" in screen_text(pilot.app)
        table = screen.query_one("#eval-table", DataTable)
        table.move_cursor(row=table.get_row_index(f"{EVAL_OLD}:0"))
        await pilot.press("enter")
        browser = await pilot_wait_until(
            pilot,
            lambda: pilot.app.screen if isinstance(pilot.app.screen, EvalSamplesScreen) else None,
            what="the sample browser",
        )
        await pilot_wait_until(pilot, lambda: browser.loaded, what="the samples")
        assert "this evaluation saved no samples" in browser.error
        assert browser.query_one("#samples-table", DataTable).row_count == 0


BATTLES = [
    ("tiny-owt", "owt-small", "model_a"),
    ("tiny-owt", "owt-small", "model_a"),
    ("owt-small", "tiny-owt", "model_a"),
    ("tiny-owt", "owt-small", "tie"),
    ("owt-small", "chat-v1", "model_a"),
    ("chat-v1", "owt-small", "model_a"),
    ("chat-v1", "owt-small", "tie (bothbad)"),
    ("tiny-owt", "chat-v1", "model_b"),
    ("tiny-owt", "chat-v1", "model_a"),
]


def write_battles(home: Path) -> Path:
    path = home / "arena" / "battles.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        path,
        [
            {
                "model_a": a,
                "model_b": b,
                "winner": w,
                "tstamp": FROZEN_NOW + i,
                "prompt": "p",
                "answer_a": "x",
                "answer_b": "y",
                "checkpoint_a": None,
                "checkpoint_b": None,
                "sampling": {},
            }
            for i, (a, b, w) in enumerate(BATTLES)
        ],
    )
    return path


async def test_ratings_panel_shows_bradley_terry_numbers(evals, canvas_home):
    from engine.eval import arena

    path = write_battles(canvas_home)
    expected = arena.fit_ratings(arena.read_battles(path)).to_json()["ratings"]
    assert len(expected) == 3
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        shown = [(r.model, r.rating, r.lo, r.hi, r.battles) for r in screen.arena.rows]
        assert [m for m, *_ in shown] == sorted(expected, key=lambda m: -expected[m]["rating"])
        text = screen_text(pilot.app)
        assert "9 battles" in text
        for model, r in expected.items():
            lo, hi = r["ci95"]
            assert f"{r['rating']:.0f} [{lo:.0f}, {hi:.0f}] ({r['battles']})" in text, model
        assert math.isclose(min(r["rating"] for r in expected.values()), min(s[1] for s in shown))


async def test_ratings_panel_without_battles(evals):
    async with app().run_test(size=(120, 40)) as pilot:
        await open_evaluation(pilot)
        assert "no battles yet" in screen_text(pilot.app)


async def test_no_evaluations_yet_and_no_rescans_while_covered():
    async with CanvasApp(clock=lambda: FROZEN_NOW, poll_interval=0.05).run_test(size=(80, 24)) as pilot:
        screen = await open_evaluation(pilot)
        assert "No evaluations yet." in screen_text(pilot.app)
        assert screen.query_one("#eval-table").display is False
        # Under a modal (the help) the screen stops rescanning, though Textual still counts it as
        # current (it shows through); it scans again once it is on top.
        await pilot.press("question_mark")
        await pilot_wait_until(pilot, lambda: pilot.app.screen is not screen, what="the help")
        covered = screen.scans
        await pilot.pause(0.5)  # ten poll intervals
        assert screen.scans - covered <= 1  # at most the scan that was already under way
        await pilot.press("escape")
        await pilot_wait_until(pilot, lambda: screen.scans >= covered + 3, what="scans again")


async def test_live_progress_of_a_running_evaluation(evals):
    def progress(w) -> None:
        w.emit("status", state="starting", message="loading tiny-owt", t=FROZEN_NOW - 20)
        w.emit(
            "progress",
            phase="perplexity tiny-owt",
            done=12,
            total=50,
            unit="docs",
            eta=65.0,
            t=FROZEN_NOW - 5,
        )

    make_run("eval-live", kind="eval", status="starting", created=FROZEN_NOW - 30, write=progress)
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        assert screen.query_one("#eval-live").display is True
        text = screen_text(pilot.app)
        assert "eval-live" in text and "perplexity tiny-owt 12/50 docs · eta 1m05s" in text
        assert "1 running" in screen.sub_title


async def test_launch_form_refuses_samples_zero_with_the_preflight_message(evals):
    from engine.config.errors import ConfigError
    from engine.eval import launch

    with pytest.raises(ConfigError) as refused:
        launch.preflight(launch.EvalConfig(models=("tiny-owt",), samples=0))
    before = len(list_runs())
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        form = await open_launch_form(pilot)
        await pilot.press("ctrl+l")  # nothing picked
        assert form.error_field == "models"
        form.query_one("#launch-extra", Input).value = "tiny-owt"
        form.query_one("#launch-samples", Input).value = "many"
        await pilot.press("ctrl+l")
        assert form.error_field == "samples" and "'many'" in form.error
        form.query_one("#launch-samples", Input).value = "0"
        await pilot.press("ctrl+l")
        await pilot_wait_until(pilot, lambda: not form.launching and form.error, what="the preflight")
        assert form.error_field == "samples"
        assert form.error == refused.value.message
        assert str(form.query_one("#launch-error", Static).render()) == refused.value.message
        assert pilot.app.screen is form  # still open: nothing launched
        await pilot.press("escape")
        assert pilot.app.screen is screen
    assert len(list_runs()) == before  # nothing created


async def test_launch_form_starts_an_evaluation_with_what_was_typed(evals, monkeypatch):
    import canvas_tui.screens.eval_launch as eval_launch

    asked = []

    def fake_start(request):
        asked.append(request)
        return make_run("eval-new", kind="eval", status="starting", created=FROZEN_NOW)

    monkeypatch.setattr(eval_launch, "start_eval", fake_start)
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        form = await open_launch_form(pilot, loaded=False)
        form.query_one("#launch-extra", Input).value = "tiny-owt, ./models/[x]"
        form.query_one("#launch-data", Input).value = "embedded?limit=200"
        form.query_one("#launch-samples", Input).value = "7"
        await pilot.press("ctrl+l")
        await pilot_wait_until(pilot, lambda: pilot.app.screen is screen, what="the form to close")
        assert asked[0].models == ("tiny-owt", "./models/[x]")
        assert (asked[0].data, asked[0].samples, asked[0].checkpoint) == ("embedded?limit=200", 7, None)
        await pilot_wait_until(pilot, lambda: "eval-new" in screen_text(pilot.app), what="the new run listed")


async def test_arena_key_opens_the_arena_with_the_evaluations_models(evals, monkeypatch):
    from textual.screen import Screen

    import canvas_tui.screens.arena as arena_screen

    seen = []

    class FakeArena(Screen):
        def __init__(self, models) -> None:
            super().__init__()
            seen.append(list(models))

    monkeypatch.setattr(arena_screen, "ArenaScreen", FakeArena)
    async with app().run_test(size=(120, 40)) as pilot:
        await open_evaluation(pilot)
        await pilot.press("a")
        await pilot_wait_until(pilot, lambda: isinstance(pilot.app.screen, FakeArena), what="the arena")
        assert [(c.label, c.model, c.checkpoint) for c in seen[0]] == [
            ("tiny-owt", RUN_P, "best"),
            ("owt-small", RUN_Q, "best"),
        ]


async def test_evaluation_is_reachable_from_the_palette_binding(evals):
    async with app().run_test(size=(80, 24)) as pilot:
        screen = await open_evaluation(pilot)
        await pilot.press("E")  # again: no second copy on the stack
        assert sum(isinstance(s, EvaluationScreen) for s in pilot.app.screen_stack) == 1
        await pilot.press("escape")
        assert pilot.app.screen is not screen


# ------------------------------------------------------------------------------------ snapshots
def _no_blink(app) -> None:
    for field in app.screen.query(Input):
        field.cursor_blink = False


async def evaluation_loaded(pilot) -> None:
    await open_evaluation(pilot)
    _no_blink(pilot.app)
    await pilot.pause(0.2)


async def samples_loaded(pilot) -> None:
    await open_evaluation(pilot)
    await pilot.press("enter")
    await pilot_wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, EvalSamplesScreen) and pilot.app.screen.loaded,
        what="the sample browser",
    )
    await pilot.pause(0.2)


@pytest.fixture
def snapshot_store(evals, canvas_home, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    if _has_arena():
        write_battles(canvas_home)
    return evals


def _has_arena() -> bool:
    try:
        import engine.eval.arena  # noqa: F401
    except ImportError:
        return False
    return True


def test_evaluation_120x40(snapshot_store, snap_compare):
    assert snap_compare(app(), terminal_size=(120, 40), run_before=evaluation_loaded)


def test_evaluation_80x24(snapshot_store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=evaluation_loaded)


@pytest.mark.parametrize("theme", ["canvas-light", "canvas-high-contrast"])
def test_evaluation_in_theme(snapshot_store, snap_compare, theme):
    assert snap_compare(app(theme), terminal_size=(120, 40), run_before=evaluation_loaded)


def test_eval_samples_120x40(snapshot_store, snap_compare):
    assert snap_compare(app(), terminal_size=(120, 40), run_before=samples_loaded)


def test_eval_samples_80x24(snapshot_store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=samples_loaded)


async def _launch_form(pilot) -> None:
    await open_evaluation(pilot)
    await pilot.press("n")
    await pilot_wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, EvalLaunchScreen) and pilot.app.screen.loaded,
        what="the launch form",
    )
    _no_blink(pilot.app)
    await pilot.pause(0.2)


def test_eval_launch_80x24(snapshot_store, snap_compare):
    fake_checkpoint(make_run("tiny-owt", run_id=RUN_P, created=FROZEN_NOW - 7200), 10)
    assert snap_compare(app(), terminal_size=(80, 24), run_before=_launch_form)


def test_static_helpers_are_literal():
    from canvas_tui.eval_model import ArenaView, RatingRow
    from canvas_tui.widgets.eval_panes import arena_content

    content = arena_content(ArenaView((RatingRow(HOSTILE, 1000.0, 990.0, 1010.0, 3),), 3), width=60)
    assert "[bold red]not bold[" in content.plain
    Static(content)  # renders without a MarkupError


async def test_arena_key_on_a_one_model_evaluation_says_why_and_opens_nothing(evals):
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        table = screen.query_one(DataTable)
        table.move_cursor(row=table.row_count - 1)  # the older evaluation: one model
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause(0.2)
        assert pilot.app.screen is screen
        said = [n.message for n in pilot.app._notifications]
        assert any(
            "the selected evaluation has 1 model." in m and "canvas arena MODEL_A MODEL_B" in m for m in said
        )


@pytest.mark.slow
async def test_launch_form_runs_a_real_evaluation_and_its_results_fill_the_table(tmp_path):
    """The form's launch is the real one: preflight, an `eval` engine process, results.json, and
    the new evaluation's row in the table with the numbers of its results.json."""
    from engine.eval.results import read_results
    from engine.runs import RunKind
    from tests.test_eval_run import CORPUS, tiny_run

    tiny_run("m", seed=0, head_scale=1.0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    async with CanvasApp(poll_interval=0.5).run_test(size=(120, 40)) as pilot:
        screen = await open_evaluation(pilot)
        form = await open_launch_form(pilot)
        form.query_one("#launch-extra", Input).value = "m"
        form.query_one("#launch-data", Input).value = f"{corpus}?sample_by=line"
        form.query_one("#launch-samples", Input).value = "3"
        await pilot.press("ctrl+l")
        await pilot_wait_until(pilot, lambda: pilot.app.screen is screen, timeout=60, what="the launch")
        [run] = [r for r in list_runs() if r.read_meta().kind == RunKind.EVAL]
        assert run.read_meta().config["samples"] == 3
        table = screen.query_one("#eval-table", DataTable)
        await pilot_wait_until(
            pilot, lambda: f"{run.id}:0" in table_keys(table), timeout=180, what="the finished evaluation"
        )
        results = read_results(run.path)
        assert run.read_meta().status == "finished"
        bpb = results.model("m").metrics["bits_per_byte"]
        assert cell(table, f"{run.id}:0", "bits_per_byte") == fmt_metric(Value(bpb["value"], *bpb["ci95"]))
        assert results.settings["samples"] == 3 and results.settings["data"] == f"{corpus}?sample_by=line"
