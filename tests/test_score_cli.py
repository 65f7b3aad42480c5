"""`canvas score`: texts in files, several reference files, clear refusals, and re-scoring an eval
run's saved samples against its results.json (exact reproduction, and a changed number caught)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from canvas_tui.cli import main
from engine.eval.samples import Sample, write_samples
from engine.eval.scoring import score_generation, score_samples
from engine.runs import RunKind, create_run

PREDS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS_1 = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
REFS_2 = ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def score_json(capsys, *args: str) -> dict:
    assert main(["score", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_score_files_json_with_two_reference_files(tmp_path, capsys):
    p, r1, r2 = (
        write(tmp_path / "p.txt", PREDS),
        write(tmp_path / "r1.txt", REFS_1),
        write(tmp_path / "r2.txt", REFS_2),
    )
    record = score_json(capsys, "--predictions", str(p), "--references", str(r1), "--references", str(r2))
    # sacrebleu's test_bleu.py README example: 48.530827 with both references.
    assert abs(record["bleu"]["value"] - 48.530827) < 1e-6
    assert record["bleu_signature"].startswith("nrefs:2|")
    expected = score_generation(PREDS, [[a, b] for a, b in zip(REFS_1, REFS_2, strict=True)], seed=0)
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "chrf_pp"):
        assert record[key] == expected.metrics[key]
    assert record["settings"] == {"samples": 3, "references": 2, "seed": 0, "n_bootstrap": 1000}


def test_score_table_and_crlf_lines(tmp_path, capsys):
    p = tmp_path / "p.txt"
    p.write_bytes(b"a cat sat\r\nthe dog\r\n")
    r = write(tmp_path / "r.txt", ["a cat sat", "the dog"])
    assert main(["score", "--predictions", str(p), "--references", str(r)]) == 0
    out = capsys.readouterr().out
    assert "scored 2 predictions against 1 reference each (seed 0" in out
    assert "ROUGE-1       1.0000" in out and "BLEU signature:   nrefs:1|case:mixed|eff:no|tok:13a" in out


def test_line_count_mismatch_names_both_files_and_counts(tmp_path, capsys):
    p, r = write(tmp_path / "preds.txt", PREDS), write(tmp_path / "refs.txt", REFS_1[:2])
    assert main(["score", "--predictions", str(p), "--references", str(r)]) == 2
    err = capsys.readouterr().err
    assert f"--predictions {p} has 3 lines but --references {r} has 2" in err
    assert "Traceback" not in err


def test_empty_and_missing_files_are_refused(tmp_path, capsys):
    p = write(tmp_path / "p.txt", PREDS)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["score", "--predictions", str(p), "--references", str(empty)]) == 2
    assert f"--references {empty}: the file is empty" in capsys.readouterr().err
    assert main(["score", "--predictions", str(tmp_path / "nope.txt"), "--references", str(p)]) == 2
    assert "--predictions" in (err := capsys.readouterr().err) and "no such file" in err
    assert main(["score", "--predictions", str(p)]) == 2
    assert "at least one --references FILE" in capsys.readouterr().err


# ------------------------------------------------------------------------------ EVAL_RUN
def make_eval_run(name: str = "ev"):
    """An eval run as `canvas eval` leaves it: samples.jsonl and results.json (the shared shapes)."""
    run = create_run(RunKind.EVAL, name, {"tasks": ["generation"]})
    pairs = [
        ("the cat sat on the mat", "a cat sat on a mat", "the cat sat"),
        ("the dog ran off", "the dog ran far away", "dog"),
        ("hello there world", "hello world", "hello there world"),
        ("one two three four", "one two four", "four three two one"),
    ]
    samples = [
        Sample(i, "generation", "validation", f"prompt {i}", ref, {"Model 1": o1, "Model 2": o2})
        for i, (ref, o1, o2) in enumerate(pairs)
    ]
    seed, n_bootstrap = 11, 200
    models = []
    for label in ("Model 1", "Model 2"):
        scores = score_samples(samples, label, seed=seed, n_bootstrap=n_bootstrap)
        for s, row in zip(samples, scores.per_sample, strict=True):
            s.scores[label] = row
        models.append(
            {
                "label": label,
                "model": label,
                "kind": "pretrain",
                "metrics": scores.metrics,
                "bleu_signature": scores.bleu_signature,
                "chrf_signature": scores.chrf_signature,
            }
        )
    write_samples(run.path / "samples.jsonl", samples)
    results = {
        "schema": 1,
        "settings": {"samples": 4, "tasks": ["generation"], "seed": seed, "n_bootstrap": n_bootstrap},
        "models": models,
        "comparisons": [],
    }
    (run.path / "results.json").write_text(json.dumps(results))
    run.update_meta(status="finished")
    return run


def test_rescoring_an_eval_run_reproduces_results_json_exactly(capsys):
    run = make_eval_run()
    assert main(["score", run.id]) == 0
    out = capsys.readouterr().out
    assert "re-scored 4 saved samples" in out and "(seed 11, 200 bootstrap resamples)" in out
    assert out.count("all 9 stored numbers reproduced exactly") == 2  # 7 metrics + 2 signatures, per model
    assert "DIFFERS" not in out
    report = score_json(capsys, "ev")
    assert [m["label"] for m in report["models"]] == ["Model 1", "Model 2"]
    assert all(all(m["matches"].values()) and m["per_sample_matches"] == 4 for m in report["models"])


def test_rescoring_catches_a_number_that_differs(capsys):
    run = make_eval_run()
    path = run.path / "results.json"
    results = json.loads(path.read_text())
    results["models"][1]["metrics"]["rougeL"]["ci95"][0] += 1e-9
    path.write_text(json.dumps(results))
    assert main(["score", str(run.path)]) == 1
    out = capsys.readouterr().out
    assert "ROUGE-L" in out and "DIFFERS from results.json" in out
    assert "not reproduced: rougeL" in out
    # With another seed nothing matches but the point values and signatures.
    assert main(["score", str(run.path), "--seed", "12", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["models"][0]["matches"]["bleu_signature"] and not report["models"][0]["matches"]["rouge1"]


def test_score_refuses_a_run_that_is_not_an_eval(capsys):
    run = create_run(RunKind.PRETRAIN, "not-eval", {})
    assert main(["score", run.id]) == 2
    assert "is a pretrain run, not an eval run" in capsys.readouterr().err
    assert main(["score", "no-such-run"]) == 2
    assert "EVAL_RUN" in capsys.readouterr().err


def test_canvas_score_imports_no_torch():
    code = (
        "import sys\n"
        "from canvas_tui.cli import build_parser\n"
        "import canvas_tui.commands.score\n"
        "build_parser()\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("flags", [["--predictions", "x.txt"], ["--references", "x.txt"]])
def test_eval_run_and_files_together_are_refused(flags, capsys):
    assert main(["score", "some-run", *flags]) == 2
    assert "either EVAL_RUN or --predictions/--references" in capsys.readouterr().err
