"""The arena's data, without Textual: Bradley–Terry ratings against closed forms, ties, the bootstrap,
win fractions, the battles file (round trip, torn lines, concurrent appends) and `canvas arena ratings`."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import stat

import pytest

from canvas_tui.cli import main
from engine.eval.arena import (
    GENERAL_PROMPTS,
    ArenaError,
    ArenaPrompt,
    Battle,
    append_battle,
    battles_path,
    draw_prompt,
    fit_ratings,
    held_out_openings,
    read_battles,
)


def b(a: str, bb: str, winner: str, t: float = 0.0) -> Battle:
    return Battle(a, bb, winner, t)


# ------------------------------------------------------------------------------------ ratings
def test_two_models_three_wins_in_four_is_400_log10_3_apart():
    # A beats B 3 times of 4 (two as model_a, one as model_b): P(A beats B) = 3/4, so
    # 1 / (1 + 10^(-(Ra - Rb)/400)) = 3/4  =>  Ra - Rb = 400 log10 3.
    battles = [b("A", "B", "model_a"), b("B", "A", "model_b"), b("A", "B", "model_a"), b("A", "B", "model_b")]
    r = fit_ratings(battles, n_bootstrap=0)
    assert r.anchor == "A" and not r.regularised
    assert r.ratings["A"].rating == pytest.approx(1000.0, abs=1e-9)
    assert r.ratings["B"].rating == pytest.approx(1000 - 400 * math.log10(3), abs=1e-7)
    assert r.models == ["A", "B"] and r.ratings["A"].battles == 4
    # Anchored on B instead: the same difference, B at 1000.
    r = fit_ratings(battles, n_bootstrap=0, anchor="B")
    assert r.ratings["B"].rating == pytest.approx(1000.0)
    assert r.ratings["A"].rating == pytest.approx(1000 + 400 * math.log10(3), abs=1e-7)
    # Another scale and base: the difference is scale * log_base(3).
    r = fit_ratings(battles, n_bootstrap=0, scale=100, base=math.e, init=0)
    assert r.ratings["A"].rating - r.ratings["B"].rating == pytest.approx(100 * math.log(3), abs=1e-7)


def test_ties_count_half_a_win_to_each_side():
    # A: one win, two ties (one of them "both bad") against B: a score of 2 of 3 => 400 log10 2 apart.
    battles = [b("A", "B", "model_a"), b("B", "A", "tie"), b("A", "B", "tie (bothbad)")]
    r = fit_ratings(battles, n_bootstrap=0)
    assert r.ratings["A"].rating - r.ratings["B"].rating == pytest.approx(400 * math.log10(2), abs=1e-7)
    assert r.win_fraction["A"]["B"] == pytest.approx(2 / 3) and r.win_fraction["B"]["A"] == pytest.approx(
        1 / 3
    )
    # Only ties: equal ratings.
    r = fit_ratings([b("A", "B", "tie"), b("B", "A", "tie (bothbad)")], n_bootstrap=0)
    assert r.ratings["B"].rating == pytest.approx(1000.0, abs=1e-9)


def test_three_models_maximise_the_likelihood():
    # At the MLE each model's expected score equals its actual score (the likelihood's gradient is 0).
    rng = random.Random(1)
    strength = {"x": 0.0, "y": 150.0, "z": 320.0}
    battles = []
    for _ in range(400):
        m1, m2 = rng.sample(sorted(strength), 2)
        p = 1 / (1 + 10 ** (-(strength[m1] - strength[m2]) / 400))
        u = rng.random()
        battles.append(b(m1, m2, "model_a" if u < 0.9 * p else "tie" if u < 0.9 * p + 0.1 else "model_b"))
    r = fit_ratings(battles, n_bootstrap=0, anchor="x")
    assert r.models == ["z", "y", "x"] and r.ratings["x"].rating == pytest.approx(1000)
    for m in strength:
        actual = expected = 0.0
        for bt in battles:
            if m not in (bt.model_a, bt.model_b):
                continue
            other = bt.model_b if bt.model_a == m else bt.model_a
            s_a = {"model_a": 1.0, "model_b": 0.0}.get(bt.winner, 0.5)
            actual += s_a if bt.model_a == m else 1 - s_a
            diff = r.ratings[m].rating - r.ratings[other].rating
            expected += 1 / (1 + 10 ** (-diff / 400))
        assert expected == pytest.approx(actual, abs=1e-6), m
    # And the fit recovers the generating order with sensible gaps.
    assert 50 < r.ratings["y"].rating - r.ratings["x"].rating < 300


def test_no_finite_mle_is_regularised_like_sklearn_default():
    # One battle: the unpenalised likelihood grows without bound; the fit uses sklearn's default L2
    # (C=1 on the duplicated rows): minimise |w|^2/2 + 2*(-log sigmoid(ln10 (w_A - w_B))).
    r = fit_ratings([b("A", "B", "model_a")], n_bootstrap=0)
    assert r.regularised
    # Solve the same objective independently: by symmetry w_A = -w_B = w, so d/dw: 2w - 4 ln10 (1 - s) = 0.
    lo, hi = 0.0, 10.0
    for _ in range(200):
        w = (lo + hi) / 2
        s = 1 / (1 + math.exp(-math.log(10) * 2 * w))
        if 2 * w - 4 * math.log(10) * (1 - s) > 0:
            hi = w
        else:
            lo = w
    assert r.ratings["A"].rating - r.ratings["B"].rating == pytest.approx(400 * 2 * w, abs=1e-6)


def test_bootstrap_interval_is_seeded_and_covers_the_estimate():
    battles = [b("A", "B", "model_a")] * 6 + [b("A", "B", "model_b")] * 3 + [b("B", "C", "tie")] * 3
    battles += [b("C", "A", "model_a")] * 2 + [b("C", "B", "model_b")] * 2
    one = fit_ratings(battles, seed=7)
    two = fit_ratings(battles, seed=7)
    other = fit_ratings(battles, seed=8)
    assert one.to_json() == two.to_json()
    assert one.to_json()["ratings"] != other.to_json()["ratings"]
    assert one.n_bootstrap == 1000
    for m in ("B", "C"):
        lo, hi = one.ratings[m].ci95 or (0, 0)
        assert lo < one.ratings[m].rating < hi and hi - lo > 20
    assert one.ratings["A"].ci95 == (1000.0, 1000.0)  # the anchor does not move


def test_win_fractions_and_counts():
    battles = [b("A", "B", "model_a"), b("B", "A", "model_a"), b("A", "B", "tie"), b("A", "C", "model_b")]
    r = fit_ratings(battles, n_bootstrap=0)
    assert r.win_fraction["A"]["B"] == pytest.approx(0.5)  # 1 win + half a tie of 3
    assert r.win_fraction["B"]["A"] == pytest.approx(0.5)
    assert r.win_fraction["C"]["A"] == 1.0 and r.win_fraction["A"]["C"] == 0.0
    assert r.win_fraction["B"]["C"] is None  # never met
    assert r.battles["A"] == {"B": 3, "C": 1} and r.battles["B"]["C"] == 0
    assert {m: r.ratings[m].battles for m in "ABC"} == {"A": 4, "B": 3, "C": 1}


def test_bad_anchor_and_no_battles_name_the_field():
    with pytest.raises(ArenaError) as info:
        fit_ratings([b("A", "B", "tie")], anchor="Z")
    assert info.value.field == "anchor" and "A, B" in str(info.value)
    with pytest.raises(ArenaError):
        fit_ratings([])
    with pytest.raises(ArenaError) as info:
        Battle("A", "B", "A", 0.0)
    assert info.value.field == "winner"
    with pytest.raises(ArenaError):
        Battle("A", "A", "tie", 0.0)


# ------------------------------------------------------------------------------------ the file
def test_store_round_trip_private_and_a_torn_line_is_skipped(canvas_home):
    battle = Battle(
        "m1",
        "m2 [/INST]",
        "tie (bothbad)",
        1234.5,
        prompt="Say [bold]hi[/]",
        answer_a="héllo\n",
        answer_b="",
        checkpoint_a="step-000010",
        checkpoint_b=None,
        sampling={"temperature": 0.0, "seed": 3},
    )
    path = append_battle(None, battle)
    assert path == battles_path() == canvas_home / "arena" / "battles.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    line = json.loads(path.read_text().splitlines()[0])
    assert {"model_a", "model_b", "winner", "tstamp", "prompt", "answer_a", "answer_b"} <= set(line)
    assert line["winner"] == "tie (bothbad)" and line["sampling"] == {"temperature": 0.0, "seed": 3}
    with open(path, "ab") as fh:
        fh.write(b'{"model_a": "m1", "model_b": "m2", "win')  # a crash mid-write
    append_battle(None, Battle("m2 [/INST]", "m1", "model_a", 1240.0))  # starts on its own line
    with open(path, "ab") as fh:
        fh.write(b'{"model_a": "x", "model_b": "y", "winner": "nobody", "tstamp": 1}\n')  # not a verdict
    got = read_battles(path)
    assert got == [battle, Battle("m2 [/INST]", "m1", "model_a", 1240.0)]
    assert got.skipped == 2
    assert read_battles(canvas_home / "nope.jsonl") == []


def _append_many(home: str, tag: str, n: int) -> None:
    for i in range(n):
        append_battle(
            None, Battle(f"{tag}-a", f"{tag}-b", "model_a", float(i), answer_a="x" * 3000), path=None
        )


def test_concurrent_appends_never_tear_lines(canvas_home):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(canvas_home), tag, 40)) for tag in ("p", "q", "r")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    battles = read_battles()
    assert battles.skipped == 0 and len(battles) == 120
    assert sorted({x.model_a for x in battles}) == ["p-a", "q-a", "r-a"]


# ------------------------------------------------------------------------------------ prompts
def test_prompt_set_has_held_out_openings_and_the_general_set():
    openings = held_out_openings()
    assert 50 < len(openings) < 400  # 5% of the embedded conversations
    assert all(o.strip() for o in openings)
    # They are the conversations a default fine-tune does not train on.
    from engine.finetune.chat_data.split import split_conversations
    from engine.finetune.embedded_chat import embedded_conversations

    train, _ = split_conversations(embedded_conversations(), 0.05, 1337)
    train_openings = {next(m["content"] for m in c if m["role"] == "user") for c in train}
    assert sum(o not in train_openings for o in openings) > len(openings) // 2
    assert len(GENERAL_PROMPTS) == 20
    prompts = [ArenaPrompt(o, "held-out") for o in openings[:5]] + [
        ArenaPrompt(g, "general") for g in GENERAL_PROMPTS
    ]
    drawn = [draw_prompt(prompts, random.Random(3)).text for _ in range(1)]
    rng = random.Random(3)
    many = [draw_prompt(prompts, rng) for _ in range(200)]
    assert {p.source for p in many} == {"held-out", "general"}
    assert drawn[0] == draw_prompt(prompts, random.Random(3)).text  # seeded


# ------------------------------------------------------------------------------------ the CLI
def _write(battles: list[Battle]) -> None:
    for x in battles:
        append_battle(None, x)


def test_cli_ratings_json(capsys):
    _write([b("A", "B", "model_a"), b("B", "A", "model_b"), b("A", "B", "model_a"), b("A", "B", "model_b")])
    assert main(["arena", "ratings", "--json", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"ratings", "win_fraction"}
    assert set(out["ratings"]["B"]) >= {"rating", "ci95", "battles"}
    assert out["ratings"]["A"]["rating"] == pytest.approx(1000.0)
    assert out["ratings"]["B"]["rating"] == pytest.approx(1000 - 400 * math.log10(3), abs=1e-6)
    assert out["ratings"]["B"]["battles"] == 4 and len(out["ratings"]["B"]["ci95"]) == 2
    assert out["win_fraction"]["A"]["B"] == pytest.approx(0.75)
    # The same seed gives the same intervals as the library call.
    lib = fit_ratings(read_battles(), seed=3).to_json()
    assert out["ratings"]["B"]["ci95"] == pytest.approx(lib["ratings"]["B"]["ci95"])
    # --anchor B, and a table by default.
    assert main(["arena", "ratings", "--json", "--anchor", "B"]) == 0
    assert json.loads(capsys.readouterr().out)["ratings"]["B"]["rating"] == pytest.approx(1000.0)
    assert main(["arena", "ratings"]) == 0
    table = capsys.readouterr().out
    assert "95% CI" in table and "Win fraction" in table and "0.75 (4)" in table


def test_cli_ratings_without_battles_and_bad_flags(capsys, tmp_path):
    assert main(["arena", "ratings"]) == 0
    assert "No battles yet" in capsys.readouterr().out
    assert main(["arena", "ratings", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ratings"] == {}
    assert main(["arena", "ratings", "--battles", str(tmp_path / "missing.jsonl")]) == 2
    assert "--battles" in capsys.readouterr().err
    other = tmp_path / "elsewhere.jsonl"
    append_battle(None, b("x", "y", "model_b"), path=other)
    assert main(["arena", "ratings", "--battles", str(other), "--json", "--anchor", "nobody"]) == 2
    assert "--anchor" in capsys.readouterr().err
    assert main(["arena", "ratings", "--battles", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ratings"]["y"]["rating"] > 1000
    assert main(["arena", "only-one"]) == 2
    assert "two or three" in capsys.readouterr().err
    assert main(["arena", "a", "b", "--json"]) == 2
    assert "--json is for `canvas arena ratings`" in capsys.readouterr().err
    assert not os.path.exists(battles_path()) or read_battles() == []
