"""Issue 15: ``canvas finetune`` without ``--base`` (and the New run form's fine-tune tab) picks the
newest pre-training run WITH A USABLE CHECKPOINT, not a newer one that crashed before its first
checkpoint or whose checkpoints are damaged; it says which it picked, and the form offers every
usable run in a list to pick another. A real run store of runs as engines leave them."""

from __future__ import annotations

import json

import pytest

from engine.train.layout import write_manifest
from tests.console_fixtures import fake_checkpoint, make_app, make_run, training
from tests.test_console_app import open_finetune_tab
from tests.test_input_checks import canvas
from tests.waiting import pilot_wait_until as wait_for


def store():
    """Oldest to newest: two usable runs, one that crashed at step 13 with no checkpoint, one whose
    only checkpoint is truncated (its manifest says so)."""
    older = make_run("older-base", total_steps=10, write=training(10))
    fake_checkpoint(older, 10)
    good = make_run("good-base", total_steps=20, write=training(20))
    write_manifest(fake_checkpoint(good, 20))
    make_run("crashed-at-13", status="crashed", total_steps=600, write=training(13))
    damaged = make_run("damaged-base", total_steps=30, write=training(30))
    folder = fake_checkpoint(damaged, 30)
    write_manifest(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return older, good


def test_finetune_without_base_picks_the_newest_run_with_a_usable_checkpoint_and_says_so(capsys):
    _older, good = store()
    code, out, err = canvas(capsys, "finetune", "--set", "seq_len=64", "--dry-run")
    assert code == 0, err
    assert json.loads(out)["base"] == good.id
    assert err.startswith(
        f"no --base given: fine-tuning the newest pre-training run with a usable checkpoint, good-base "
        f"(run {good.id}, step-000020); pass --base RUN to choose another"
    )
    # named explicitly, the damaged run is refused with the file and a fix
    code, out, err = canvas(capsys, "finetune", "--base", "damaged-base", "--set", "seq_len=64", "--dry-run")
    assert code == 2 and "its checkpoint step-000030 is damaged" in err and "model.safetensors" in err


@pytest.mark.anyio
async def test_the_form_lists_the_usable_runs_and_a_pick_becomes_the_base():
    older, good = store()
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_finetune_tab(app, pilot)
        hint = str(form.query_one("#hint-ft-base").content)
        assert hint == "empty: the newest pre-training run, good-base (step-000020)"
        pick = form.query_one("#ft-base-pick")
        options = [(str(prompt), value) for prompt, value in pick._options if value is not pick.NULL]
        assert options == [
            (f"good-base (step-000020) · {good.id}", good.id),
            (f"older-base (step-000010) · {older.id}", older.id),
        ]
        pick.value = older.id
        await wait_for(pilot, lambda: form.ft_values.get("base") == older.id, what="the picked base")
        assert form.query_one("#ft-base").value == older.id
        hint_box = form.query_one("#hint-ft-base")
        await wait_for(pilot, lambda: not hint_box.display, what="the hint hidden")  # the field names it
