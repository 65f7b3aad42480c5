"""Snapshots of the console at 80x24 (an SSH terminal) and 120x40, from deterministic fixtures:
fixed run ids and creation times, a frozen clock for ages, event timestamps in UTC, no cursor
blink. Review a changed snapshot in the report before accepting it with ``--snapshot-update``."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from canvas_tui.screens.new_run import NewRunScreen
from engine.config.finetune import FinetuneConfig
from engine.runs.store import RunDir
from tests.console_fixtures import (
    FROZEN_NOW,
    fake_checkpoint,
    finetuning,
    make_run,
    open_dashboard,
    scroll_to_telemetry,
    training,
    utc,  # noqa: F401 (a fixture)
)
from tests.console_fixtures import snapshot_app as app
from tests.waiting import pilot_wait_until

RUN_A = "20261127-100000-000-0000aaaa"
RUN_B = "20261127-115900-000-0000bbbb"
RUN_C = "20261124-120000-000-0000cccc"
RUN_F = "20261127-113000-000-0000ffff"


@pytest.fixture
def store(utc):  # noqa: F811 (the fixture imported above)
    a = make_run(
        "tiny-owt",
        run_id=RUN_A,
        created=FROZEN_NOW - 7200,
        total_steps=200,
        write=training(200, t0=FROZEN_NOW - 7000, gpus=2, log_messages=["warming up the data cache"]),
        log_lines=["=== canvas: attempt 1", "step 10 loss 6.2", "step 20 loss 5.7"],
    )
    make_run(
        "seed-base-c4",
        run_id=RUN_B,
        status="stopped",
        created=FROZEN_NOW - 60,
        total_steps=1000,
        write=training(120, t0=FROZEN_NOW - 50, gpus=0, telemetry_every=0, final="stopped"),
    )
    make_run("data-prep", run_id=RUN_C, kind="data", status="failed", created=FROZEN_NOW - 3 * 86400)
    return a


async def runs_loaded(pilot) -> None:
    await pilot_wait_until(pilot, lambda: pilot.app.screen.scans >= 1, what="the first runs scan")
    await pilot.pause(0.1)


async def dashboard_loaded(pilot) -> None:
    await runs_loaded(pilot)
    await open_dashboard(pilot.app, pilot, _path(RUN_A), settle=0.3)


async def telemetry_loaded(pilot) -> None:
    """The dashboard, scrolled so that its GPU and system panes are in view (at 80x24)."""
    await dashboard_loaded(pilot)
    await scroll_to_telemetry(pilot)


def _path(run_id: str):
    from engine.locations import runs_dir

    return runs_dir() / run_id


async def new_run_loaded(pilot) -> None:
    await runs_loaded(pilot)
    await pilot.press("n")
    await pilot.pause(0.3)
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause(0.1)


def test_runs_80x24(store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=runs_loaded)


def test_runs_120x40(store, snap_compare):
    assert snap_compare(app(), terminal_size=(120, 40), run_before=runs_loaded)


def test_dashboard_120x40(store, snap_compare):
    assert snap_compare(app(), terminal_size=(120, 40), run_before=dashboard_loaded)


def test_dashboard_80x24(store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=dashboard_loaded)


def test_new_run_80x24(store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=new_run_loaded)


async def help_loaded(pilot) -> None:
    from canvas_tui.screens.help import HelpScreen

    await runs_loaded(pilot)
    await pilot.press("question_mark")
    await pilot_wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, HelpScreen) and pilot.app.screen.is_mounted,
        what="the help screen",
    )
    await pilot.pause(0.2)


def test_help_80x24(store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=help_loaded)


# Every screen in every theme at 120x40 (canvas-dark runs and dashboard at 120x40 are above).
SCREENS = {"runs": runs_loaded, "dashboard": dashboard_loaded, "new_run": new_run_loaded, "help": help_loaded}
THEMED = [
    (screen, theme)
    for theme in ("canvas-dark", "canvas-light", "canvas-high-contrast")
    for screen in SCREENS
    if not (theme == "canvas-dark" and screen in ("runs", "dashboard"))
]


@pytest.mark.parametrize(("screen", "theme"), THEMED, ids=[f"{s}-{t}" for s, t in THEMED])
def test_screen_in_theme(store, snap_compare, screen, theme):
    assert snap_compare(app(theme), terminal_size=(120, 40), run_before=SCREENS[screen])


# The fine-tune tab, ready to launch: an empty base is the newest pre-training run with a checkpoint
# (RUN_A, given one here), the data the embedded conversations cut to a fixed count (the preflight
# reads local data, and offline Hub data from the cache, so a Hub dataset would be refused here).
async def finetune_tab_loaded(pilot) -> None:
    await runs_loaded(pilot)
    fake_checkpoint(RunDir(_path(RUN_A)), 200)
    await pilot.press("n")
    await pilot_wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, NewRunScreen) and pilot.app.screen.is_mounted,
        what="the new-run form",
    )
    form = pilot.app.screen
    form.query_one("#new-tabs").active = "tab-finetune"
    form.query_one("#ft-data").value = "embedded?limit=100"
    await pilot.pause(0.1)
    await pilot_wait_until(
        pilot,
        lambda: (
            form.preflight_state == "ok"
            and form.base_hint_loaded
            and form.ft_config is not None  # typing is validated once it pauses: the checked config
            and form.ft_config.data == "embedded?limit=100"
        ),
        what="the fine-tune preflight and base hint",
    )
    for field in form.query(Input):
        field.cursor_blink = False
    await pilot.pause(0.2)


def test_new_run_finetune_80x24(store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=finetune_tab_loaded)


def test_new_run_finetune_120x40(store, snap_compare):
    assert snap_compare(app(), terminal_size=(120, 40), run_before=finetune_tab_loaded)


@pytest.fixture
def ft_store(utc):  # noqa: F811 (the fixture imported above)
    make_run(
        "tiny-owt",
        run_id=RUN_A,
        created=FROZEN_NOW - 7200,
        total_steps=200,
        write=training(200, t0=FROZEN_NOW - 7000, gpus=1),
    )
    config = FinetuneConfig(
        base=RUN_A, base_checkpoint="step-000200", data="embedded", chat_template="chatml"
    ).to_dict()
    return make_run(
        "chat-v1",
        kind="finetune",
        run_id=RUN_F,
        created=FROZEN_NOW - 1900,
        total_steps=40,
        config=config,
        write=finetuning(40, t0=FROZEN_NOW - 1800),
    )


async def ft_dashboard_loaded(pilot) -> None:
    await runs_loaded(pilot)
    await open_dashboard(pilot.app, pilot, _path(RUN_F), settle=0.3)


def test_finetune_dashboard_120x40(ft_store, snap_compare):
    assert snap_compare(app(), terminal_size=(120, 40), run_before=ft_dashboard_loaded)


def test_finetune_dashboard_80x24(ft_store, snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=ft_dashboard_loaded)


def test_finetune_runs_150x30(ft_store, snap_compare):
    """From 145 columns the runs list says what each run trains (the "model" column)."""
    assert snap_compare(app(), terminal_size=(150, 30), run_before=runs_loaded)
