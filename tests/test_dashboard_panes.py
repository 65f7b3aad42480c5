"""The dashboard's plots and panes of issue 15 (part D), on real run directories written by the real
event writer: round axis ticks and the raw loss under the smoothed one; fixed 0-100% sparkline and
bar scales; the nvitop-like GPU pane (one line a GPU, the straggler and the hottest card marked,
eight GPUs at 160x48 with the log still on screen, a compact two-per-line form at 80x24); the
metric picker; samples; an evaluation run's dashboard.
"""

from __future__ import annotations

import math
import re

import pytest

from canvas_tui.fmt import bar, sparkline
from canvas_tui.widgets.gpu_pane import GpuPane
from canvas_tui.widgets.loss_plot import LossPlot
from canvas_tui.widgets.system_pane import SystemPane
from canvas_tui.widgets.ticks import log_ticks, nice_ticks, tick_labels
from engine.runs import EventWriter
from tests.console_fixtures import (
    FROZEN_NOW,
    dashboard_of,
    make_run,
    snapshot_app,
    utc,  # noqa: F401 (a fixture of the snapshots below)
)
from tests.test_console_snapshots import dashboard_loaded as eight_loaded
from tests.test_console_snapshots import telemetry_loaded
from tests.waiting import pilot_wait_until as wait_for

pytestmark = pytest.mark.anyio

#: Eight GPUs: GPU 3 lags (12%), GPU 5 runs hot (88 °C); every field the sampler writes.
STRAGGLER, HOTTEST = 3, 5


def gpu_feed(w: EventWriter, *, gpus: int = 8, t: float = FROZEN_NOW, rounds: int = 3) -> None:
    """A synthetic multi-GPU feed, as engine/telemetry/nvml_sampler.py writes it."""
    for r in range(rounds):
        for i in range(gpus):
            w.emit(
                "gpu",
                index=i,
                util=12.0 if i == STRAGGLER else 95.0 - i,
                mem_used=(60 + i) * 2**30,
                mem_total=80 * 2**30,
                temp=88.0 if i == HOTTEST else 60.0 + i,
                power=650.0 + i,
                power_limit=700.0,
                sm_clock=1980.0,
                name="NVIDIA H100 80GB HBM3",
                t=t + r,
            )


def long_run(steps: int = 20_000, every: int = 100, gpus: int = 8):
    """A 20k-step pre-training run (every 100th step written) with an 8-GPU feed and all metrics."""

    def write(w: EventWriter) -> None:
        t0 = FROZEN_NOW - 3600
        w.emit("status", state="running", message="", t=t0)
        w.emit("run_info", total_steps=steps, params=1000, precision="bf16", device="cuda", t=t0)
        for step in range(every, steps + 1, every):
            w.emit(
                "metric",
                step=step,
                loss=2.0 + 6.0 * math.exp(-4.0 * step / steps) + (1.5 if step == steps // 2 else 0.0),
                lr=2e-3,
                grad_norm=1.0 + step / steps,
                tokens_per_s=8000.0,
                step_time=0.25 + step / steps,
                tokens=step * 2048,
                peak_mem=(20 + step // 1000) * 2**30,
                mfu=0.3 + 0.2 * step / steps,
                t=t0 + step / 10,
            )
            if step % 5000 == 0:
                w.emit(
                    "eval", step=step, val_loss=2.2 + 5.0 * math.exp(-4.0 * step / steps), t=t0 + step / 10
                )
        if gpus:
            gpu_feed(w, gpus=gpus)
        w.emit(
            "system",
            cpu_pct=12.0,
            ram_used=8 * 2**30,
            ram_total=64 * 2**30,
            rss=2**30,
            disk_free=2**40,
            t=FROZEN_NOW,
        )

    return write


def plot_text(plot) -> str:
    """What a plotext widget draws, as plain text."""
    return re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build())


# ------------------------------------------------------------------------------------ ticks
@pytest.mark.parametrize(
    ("lo", "hi", "want"),
    [
        (1, 20_000, ["5k", "10k", "15k", "20k"]),
        (0, 20_000, ["0", "5k", "10k", "15k", "20k"]),
        (100, 12_345, ["5k", "10k"]),
        (2.05, 7.9, ["3", "4", "5", "6", "7"]),
        (0.0001, 0.0021, ["0.0005", "0.001", "0.0015", "0.002"]),
        (1e-6, 2e-5, ["5e-6", "1e-5", "1.5e-5", "2e-5"]),
        (0, 123_456_789, ["0", "50M", "100M"]),
        (3.3, 3.31, ["3.3", "3.305", "3.31"]),
    ],
)
def test_ticks_are_round_numbers(lo, hi, want):
    ticks = nice_ticks(lo, hi, 5)
    assert tick_labels(ticks) == want
    assert all(lo <= t <= hi for t in ticks) and len(ticks) <= 5


def test_ticks_never_go_negative_for_a_range_that_starts_at_zero_or_above():
    for lo, hi in [(0, 1), (0, 7), (1, 3), (0, 0.003), (5000, 5015)]:
        ticks = nice_ticks(lo, hi, 6)
        assert ticks and min(ticks) >= 0, (lo, hi, ticks)
        # Each tick is a whole multiple of a 1-2-5 step: never 5007.5 on a 5000..5015 axis.
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1.0, 2.0, 5.0), (lo, hi, ticks)
        assert all(abs(t / step - round(t / step)) < 1e-6 for t in ticks), ticks
    assert tick_labels(nice_ticks(5000, 5015, 6)) == ["5k", "5.005k", "5.01k", "5.015k"]
    assert nice_ticks(-3, 3, 5) == [-2.0, 0.0, 2.0]  # negatives only where the data is negative


def test_log_ticks_are_decades_or_one_two_five():
    assert log_ticks(0.01, 100) == [0.01, 0.1, 1.0, 10.0, 100.0]
    assert tick_labels(log_ticks(2.1, 7.9)) == ["3", "4", "5", "6", "7"]


def test_sparklines_and_bars_of_percentages_use_a_fixed_scale():
    # 12% used to be drawn as a full-height block (the line's own min-max scale).
    assert sparkline([12, 12, 12], 3, lo=0, hi=100) == "▁▁▁"
    assert sparkline([10, 50, 95], 3, lo=0, hi=100) == "▁▅█"
    assert sparkline([1, 2, 3, 4], 4) == "▁▃▆█"  # no fixed scale: min-max, as before
    assert (
        bar(50, 10) == ("█████", "     ") and bar(12.5, 8) == ("█", "       ") and bar(None, 3) == ("", "   ")
    )


# ------------------------------------------------------------------------------------ plots
async def test_loss_plot_draws_raw_under_smoothed_with_round_step_ticks():
    run = make_run("ticks", total_steps=20_000, write=long_run(gpus=0))
    async with dashboard_of(run, (160, 48), poll_interval=60.0) as (_pilot, screen):
        plot = screen.query_one(LossPlot)
        assert plot.smoothing > 0
        # Raw first (faint), the smoothed line over it, then validation.
        assert plot.series == ["train (raw)", "train (smoothed)", "validation"]
        xticks, yticks = plot.ticks
        assert tick_labels(xticks) == ["5k", "10k", "15k", "20k"]
        assert yticks == [3.0, 4.0, 5.0, 6.0, 7.0]
        text = plot_text(plot)
        assert "10k" in text and "20k" in text and "5007.5" not in text
        # The spike at step 10k (loss 2.81 + 1.5) is drawn by the raw line; smoothing flattens it.
        raw_x, raw_y = plot.data["train (raw)"]
        smooth_x, smooth_y = plot.data["train (smoothed)"]
        spike = raw_y[raw_x.index(10_000)]
        assert spike > 4.2 and smooth_y[smooth_x.index(10_000)] < spike - 0.5
        # The x axis starts at the first step: no negative step ticks, whatever the width.
        assert min(xticks) >= 0
        assert not re.search(r"(^|\s)-\d", text.splitlines()[-2])


async def test_system_sparklines_show_low_use_as_low():
    def write(w: EventWriter) -> None:
        for i in range(12):
            w.emit(
                "system",
                cpu_pct=12.0,
                ram_used=6 * 2**30,
                ram_total=64 * 2**30,
                rss=2**30,
                disk_free=2**40,
                t=FROZEN_NOW + i,
            )

    run = make_run("cpu12", write=write)
    async with dashboard_of(run, (160, 48), poll_interval=60.0) as (_pilot, screen):
        text = screen.query_one(SystemPane).text
        cpu_line = next(line for line in text.splitlines() if line.startswith("cpu"))
        ram_line = next(line for line in text.splitlines() if line.startswith("ram"))
        assert "▁" * 12 in cpu_line and "▅" not in cpu_line  # was "▅" x 12: 12% drawn as half full
        assert "▁" * 4 in ram_line and "9%" in ram_line  # RAM has a (fixed-scale) history too now


# ------------------------------------------------------------------------------------ GPU pane
async def test_eight_gpus_fit_at_160x48_one_line_each_with_the_log_on_screen():
    from canvas_tui.widgets.log_pane import LogPane

    run = make_run("eight", total_steps=20_000, write=long_run())
    async with dashboard_of(run, (160, 48), poll_interval=60.0) as (_pilot, screen):
        pane = screen.query_one(GpuPane)
        lines = pane.text.splitlines()
        assert [line.split()[0] for line in lines] == [str(i) for i in range(8)]  # one line a GPU
        assert not pane.compact
        assert (pane.straggler, pane.hottest) == (STRAGGLER, HOTTEST)
        assert lines[STRAGGLER].rstrip().endswith("slow") and " 12%" in lines[STRAGGLER]
        assert lines[HOTTEST].rstrip().endswith("hot") and "88°C" in lines[HOTTEST]
        assert not any(
            line.rstrip().endswith(("slow", "hot")) for i, line in enumerate(lines) if i not in (3, 5)
        )
        first = lines[0]
        for shown in ("95%", "60.0/80.0 GiB", "60°C", "650/700W", "1980MHz"):
            assert shown in first, (shown, first)
        # Fixed scale: 95% fills the bar almost to the end, 12% about an eighth of it.
        assert lines[0].count("█") > 5 * max(1, lines[STRAGGLER].split("%")[0].count("█"))
        assert pane.title_text == "GPUs · 8 × NVIDIA H100 80GB HBM3"
        # The whole pane and a useful log fit on the screen, without scrolling.
        log = screen.query_one(LogPane)
        assert pane.region.bottom <= 47 and pane.region.height == 8 + 2
        assert log.region.height >= 10 and log.region.bottom <= 47
        assert screen.query_one("#dash-body").max_scroll_y == 0


async def test_gpu_pane_at_80x24_is_compact_two_gpus_a_line():
    run = make_run("eight-small", total_steps=20_000, write=long_run())
    async with dashboard_of(run, (80, 24), poll_interval=60.0) as (_pilot, screen):
        pane = screen.query_one(GpuPane)
        lines = pane.text.splitlines()
        assert pane.compact and len(lines) == 4
        assert all(len(line) <= pane.content_size.width for line in lines)
        assert pane.region.right <= 80
        slow = next(line for line in lines if "slow" in line)
        hot = next(line for line in lines if "hot" in line)
        assert re.search(r"(^|\s)3 \S*\s+12% .* slow", slow), slow
        assert re.search(r"(^|\s)5 .* 88°C hot", hot), hot


async def test_one_gpu_keeps_numbers_and_the_history():
    def write(w: EventWriter) -> None:
        for i in range(20):
            w.emit(
                "gpu",
                index=0,
                util=12.0,
                mem_used=8 * 2**30,
                mem_total=80 * 2**30,
                temp=50.0,
                power=100.0,
                power_limit=400.0,
                t=FROZEN_NOW + i,
            )

    run = make_run("one", write=write)
    async with dashboard_of(run, (160, 48), poll_interval=60.0) as (_pilot, screen):
        pane = screen.query_one(GpuPane)
        (line,) = pane.text.splitlines()
        assert " 12%" in line and "8.0/80.0 GiB" in line and "50°C" in line and "100/400W" in line
        assert "▁" * 12 in line  # the utilisation history, 12% drawn low (fixed scale)
        assert (pane.straggler, pane.hottest) == (None, None)


# ------------------------------------------------------------------------------------ snapshots
@pytest.fixture
def eight_store(utc):  # noqa: F811 (the fixture imported above)
    from tests.test_console_snapshots import RUN_A

    return make_run(
        "eight-gpus",
        run_id=RUN_A,
        created=FROZEN_NOW - 7200,
        total_steps=20_000,
        write=long_run(),
    )


@pytest.mark.usefixtures("eight_store")
def test_gpu_lines_160x48(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(160, 48), run_before=eight_loaded)


@pytest.mark.usefixtures("eight_store")
def test_gpu_lines_80x24(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=telemetry_loaded)


@pytest.mark.usefixtures("eight_store")
@pytest.mark.parametrize("theme", ["canvas-light", "canvas-high-contrast"])
def test_gpu_lines_in_theme(snap_compare, theme):
    assert snap_compare(snapshot_app(theme), terminal_size=(160, 48), run_before=eight_loaded)


# ------------------------------------------------------------------------------------ metric picker
async def test_p_picks_the_metric_the_side_plot_shows_and_its_values_are_plotted():
    from canvas_tui.widgets.loss_plot import PickedMetricPlot

    run = make_run("metrics", total_steps=20_000, write=long_run(gpus=1))
    async with dashboard_of(run, (160, 48), poll_interval=60.0) as (pilot, screen):
        plot = screen.query_one("#lr-plot", PickedMetricPlot)
        assert plot.metric == "lr" and set(plot.values) == {2e-3}
        last_step = (20_000 - 100) / 10  # seconds between the first and the last metric event
        want = {
            "grad_norm": (1.005, 2.0, "grad norm"),
            "mfu": (30.1, 50.0, "MFU (%)"),
            "step_time": (0.255, 1.25, "step time (s)"),
            "peak_mem": (20.0, 40.0, "peak memory (GiB)"),
            "tokens": (204_800, 40_960_000, "tokens seen"),
            "elapsed": (0.0, last_step / 60, "elapsed (min)"),
            "lr": (2e-3, 2e-3, "learning rate"),
        }
        for key, (first, last, title) in want.items():
            await pilot.press("p")
            await wait_for(pilot, lambda key=key: plot.metric == key, what=key)
            assert plot.values[0] == pytest.approx(first) and plot.values[-1] == pytest.approx(last), key
            assert 0 < len(plot.values) <= 200  # thinned to the plot's width, first and last kept
            text = plot_text(plot)
            assert title in text, (key, text.splitlines()[0])
        # A metric the run never wrote says so instead of drawing an empty frame.
        screen.view.extra["mfu"].xs = type(screen.view.extra["mfu"].xs)("d")
        screen.view.extra["mfu"].ys = type(screen.view.extra["mfu"].ys)("d")
        plot.pick("mfu", screen.view)
        assert plot.values == [] and "MFU: not in this run" in plot_text(plot)


# ------------------------------------------------------------------------------------ samples
async def test_samples_pane_appears_when_the_first_sample_event_arrives_and_shows_text_literally():
    from canvas_tui.widgets.samples_pane import SamplesPane

    def write(w: EventWriter) -> None:
        w.emit("status", state="running", message="", t=FROZEN_NOW)
        w.emit("metric", step=1, loss=3.0, t=FROZEN_NOW)

    run = make_run("late-samples", total_steps=100, write=write, status="running")
    async with dashboard_of(run, (160, 48), poll_interval=60.0) as (pilot, screen):
        pane = screen.query_one(SamplesPane)
        assert not pane.display
        model_text = "\x1b[31mred?\x1b[0m [b]not bold[/b] \u202eevil\u202c\nline two\ttab"
        with EventWriter(run.events_path) as w:
            w.emit("sample", step=50, prompt="Once upon", text=model_text, index=0)
            w.emit("sample", step=50, prompt="[/INST]", text="second", index=1)
        await wait_for(pilot, lambda: pane.step == 50 and pane.display, what="the samples pane")
        await pilot.pause(0.1)
        assert screen.has_class("-samples") and pane.region.height >= 5
        # Literal: markup shown as typed; escape and bidi controls neutralised (shown as U+FFFD),
        # newlines and tabs kept.
        first = "Once upon\ufffd[31mred?\ufffd[0m [b]not bold[/b] \ufffdevil\ufffd\nline two\ttab"
        assert pane.text == first + "\n\n[/INST]second"
        assert str(pane.border_title) == "Samples @ step 50"


# ------------------------------------------------------------------------------------ eval runs
def write_results(run, second: str = "owt-small") -> None:
    """An evaluation's results.json (two models, one comparison), written as the engine does: to a
    temporary file renamed into place, so a reader never sees half of it."""
    import json

    from tests.test_eval_screen import SETTINGS, VERDICT, model_entry

    results = {
        "schema": 1,
        "settings": SETTINGS,
        "models": [
            model_entry("tiny-owt", None, 1.5, (1.45, 1.55), 0.3),
            model_entry(second, None, 1.25, (1.2, 1.3), 0.34),
        ],
        "comparisons": [{"a": "tiny-owt", "b": "owt-small", "metric": "rougeL", "verdict": VERDICT}],
    }
    tmp = run.path / "results.json.tmp"
    tmp.write_text(json.dumps(results), encoding="utf-8")
    tmp.rename(run.path / "results.json")


async def test_an_eval_runs_dashboard_shows_its_progress_then_its_results_not_loss_plots():

    from canvas_tui.widgets.eval_run_pane import EvalRunPane
    from tests.test_eval_screen import VERDICT

    def write(w: EventWriter) -> None:
        w.emit("status", state="running", message="", t=FROZEN_NOW)
        w.emit("run_info", config={"models": ["tiny-owt"]}, device="cpu", t=FROZEN_NOW)
        w.emit(
            "progress", phase="perplexity tiny-owt", done=12, total=50, unit="docs", eta=65.0, t=FROZEN_NOW
        )

    run = make_run("eval-live", kind="eval", status="running", write=write)
    async with dashboard_of(run, (120, 40), poll_interval=60.0) as (pilot, screen):
        pane = screen.query_one(EvalRunPane)
        assert screen.has_class("-eval") and pane.display and pane.region.height >= 3
        assert not screen.query_one("#plots").display and screen.query_one(LossPlot).region.height == 0
        assert "perplexity tiny-owt" in pane.text and "24% 12/50 docs · eta 1m05s" in pane.text
        assert not screen.check_action("next_metric", ())  # no curves to pick from
        write_results(run, second="[b]owt-small[/b]")
        await wait_for(pilot, lambda: pane.results is not None, timeout=5, what="the results")
        await pilot.pause(0.1)
        lines = pane.text.splitlines()
        assert lines[0].split()[:3] == ["model", "bpb↓", "ppl↓"]
        assert lines[1].startswith("tiny-owt @best") and "1.500 ±0.05" in lines[1]
        assert lines[2].startswith("[b]owt-small[/b] @best") and "1.250 ±0.05" in lines[2]  # literal
        assert f"▸ {VERDICT}" in pane.text and "embedded?limit=200" in pane.text
        assert str(pane.border_title) == "Evaluation results"


@pytest.fixture
def eval_store(utc):  # noqa: F811 (the fixture imported above)

    from tests.test_console_snapshots import RUN_A

    def write(w: EventWriter) -> None:
        w.emit("status", state="running", message="", t=FROZEN_NOW - 600)
        w.emit("run_info", config={"models": ["tiny-owt"]}, device="cpu", t=FROZEN_NOW - 600)
        w.emit("progress", phase="perplexity tiny-owt", done=50, total=50, unit="docs", t=FROZEN_NOW - 300)
        w.emit("status", state="finished", message="", t=FROZEN_NOW - 60)

    run = make_run("eval-owt", kind="eval", run_id=RUN_A, created=FROZEN_NOW - 600, write=write)
    write_results(run)
    return run


@pytest.mark.usefixtures("eval_store")
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_eval_run_dashboard(snap_compare, size):
    assert snap_compare(snapshot_app(), terminal_size=size, run_before=eight_loaded)
