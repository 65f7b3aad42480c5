"""``canvas score``: ROUGE, BLEU, chrF and chrF++ of any texts, offline, or of an eval run's saved samples.

``canvas score --predictions FILE --references FILE [--references FILE …] [--json]`` scores one
prediction per line against the line of the same number in each reference file (several files:
several references per prediction). ``canvas score EVAL_RUN`` re-scores the ``samples.jsonl`` of an
eval run with the seed and bootstrap count of its ``results.json`` and says, number by number,
whether the stored results are reproduced.

Scoring is :func:`engine.eval.scoring.score_generation` (rouge-score and sacrebleu, torch-free),
imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from canvas_tui.cli import CliError

KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "chrf_pp")
NAMES = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum",
    "bleu": "BLEU",
    "chrf": "chrF",
    "chrf_pp": "chrF++",
}
SIGNATURES = ("bleu_signature", "chrf_signature", "chrf_pp_signature")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="ROUGE / BLEU / chrF of texts in files, or re-score an eval run's saved samples",
        description="Score predictions against references offline: ROUGE-1/2/L/Lsum F-measure "
        "(rouge-score, reference first, no stemmer; mean with a bootstrap 95%% interval) and BLEU, chrF, "
        "chrF++ (sacrebleu, corpus level, with their signatures). Files hold one text per line; give "
        "--references once per reference set. With EVAL_RUN instead, re-score that eval run's "
        "samples.jsonl with its seed and say whether its results.json numbers are reproduced.",
    )
    p.add_argument(
        "eval_run", nargs="?", metavar="EVAL_RUN", help="an eval run (id, id prefix, name) or its directory"
    )
    p.add_argument("--predictions", metavar="FILE", type=Path, help="one prediction per line")
    p.add_argument(
        "--references",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="one reference per line, line i for prediction i (repeat for several references)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="bootstrap seed (default 0; EVAL_RUN: the run's own seed)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------ files
def read_lines(path: Path, flag: str) -> list[str]:
    """The lines of a UTF-8 text file (a final newline ends the last line; CRLF accepted)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(
            f"{flag} {path}: no such file. Fix: give the path of a text file, one line per text."
        ) from None
    except IsADirectoryError:
        raise CliError(f"{flag} {path}: is a directory. Fix: give a text file, one line per text.") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{flag} {path}: not UTF-8 text ({exc}). Fix: save it as UTF-8.") from None
    except OSError as exc:
        raise CliError(f"{flag} {path}: cannot read it ({exc}).") from None
    if text == "":
        raise CliError(f"{flag} {path}: the file is empty. Fix: put one text per line in it.")
    if text.endswith("\n"):
        text = text[:-1]
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _files(args: argparse.Namespace) -> tuple[list[str], list[list[str]]]:
    if args.predictions is None or not args.references:
        raise CliError(
            "give --predictions FILE and at least one --references FILE (one text per line), or an "
            "EVAL_RUN to re-score its saved samples. Example: canvas score --predictions out.txt "
            "--references ref.txt"
        )
    predictions = read_lines(args.predictions, "--predictions")
    sets = []
    for path in args.references:
        refs = read_lines(path, "--references")
        if len(refs) != len(predictions):
            raise CliError(
                f"line counts differ: --predictions {args.predictions} has {len(predictions)} lines but "
                f"--references {path} has {len(refs)}. Fix: one reference per prediction, line for line."
            )
        sets.append(refs)
    return predictions, [list(r) for r in zip(*sets, strict=True)]


# ------------------------------------------------------------------------------------ output
def _fmt(value: float, key: str = "") -> str:
    """ROUGE (0 to 1) with four decimals, sacrebleu's 0-to-100 scores with two: one precision per
    metric, so a value and its interval read alike."""
    return f"{value:.4f}" if key.startswith("rouge") else f"{value:.2f}"


def metric_line(key: str, m: dict[str, Any]) -> str:
    ci = m.get("ci95")
    interval = f"  95% CI [{_fmt(ci[0], key)}, {_fmt(ci[1], key)}]" if ci else ""
    return f"  {NAMES[key]:<11} {_fmt(m['value'], key):>8}{interval}"


def scores_json(scores: Any) -> dict[str, Any]:
    return {
        **{key: scores.metrics[key] for key in KEYS},
        "bleu_signature": scores.bleu_signature,
        "chrf_signature": scores.chrf_signature,
        "chrf_pp_signature": scores.chrf_pp_signature,
    }


def print_scores(scores: Any) -> None:
    for key in KEYS:
        print(metric_line(key, scores.metrics[key]))
    print(f"  BLEU signature:   {scores.bleu_signature}")
    print(f"  chrF signature:   {scores.chrf_signature}")
    print(f"  chrF++ signature: {scores.chrf_pp_signature}")


# ------------------------------------------------------------------------------------ eval runs
def _eval_dir(ref: str) -> Path:
    from engine.eval.samples import SAMPLES_FILE

    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / SAMPLES_FILE).is_file():
            raise CliError(
                f"EVAL_RUN {path}: the folder has no {SAMPLES_FILE}. Fix: give an eval run that ran "
                "the generation task (`canvas runs` lists runs)."
            )
        return path
    from engine.runs.meta import RunKind
    from engine.runs.store import RunStoreError, resolve_run

    try:
        run = resolve_run(ref)
        meta = run.read_meta()
    except RunStoreError as exc:
        raise CliError(f"EVAL_RUN: {exc}") from None
    if meta.kind != RunKind.EVAL:
        raise CliError(
            f"EVAL_RUN {ref!r} is a {meta.kind} run, not an eval run. Fix: give the run that "
            "`canvas eval` made (it holds samples.jsonl and results.json)."
        )
    if not (run.path / SAMPLES_FILE).is_file():
        raise CliError(
            f"EVAL_RUN {ref!r} has no {SAMPLES_FILE} (it did not run the generation task, or has not "
            "finished). Fix: wait for it to finish, or give another eval run."
        )
    return run.path


def _same(a: Any, b: Any) -> bool:
    """Exactly equal numbers (a JSON round trip keeps floats exact), NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _metric_matches(new: dict[str, Any], old: Any) -> bool:
    if not isinstance(old, dict):
        return False
    old_ci, new_ci = old.get("ci95"), new.get("ci95")
    if old_ci is None or new_ci is None:
        ci_same = old_ci is None and new_ci is None
    else:
        ci_same = (
            len(old_ci) == 2 and _same(float(old_ci[0]), new_ci[0]) and _same(float(old_ci[1]), new_ci[1])
        )
    return _same(float(old.get("value", math.nan)), new["value"]) and ci_same


def rescore_run(folder: Path, seed_flag: int | None) -> dict[str, Any]:
    """Re-score every model's outputs in ``folder``'s samples.jsonl; compare with results.json."""
    from engine.eval.samples import SAMPLES_FILE, SamplesError, read_samples
    from engine.eval.scoring import score_samples

    try:
        samples = read_samples(folder / SAMPLES_FILE)
    except SamplesError as exc:
        raise CliError(str(exc)) from None
    if not samples:
        raise CliError(f"{folder / SAMPLES_FILE} holds no samples: nothing to score.")
    results: dict[str, Any] | None = None
    results_path = folder / "results.json"
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CliError(f"{results_path}: cannot read it ({exc}).") from None
        if not isinstance(results, dict):
            raise CliError(f"{results_path}: not a results object.")
    settings = (results or {}).get("settings") or {}
    seed = seed_flag if seed_flag is not None else int(settings.get("seed") or 0)
    n_bootstrap = int(settings.get("n_bootstrap") or 1000)
    stored: dict[str, dict[str, Any]] = {
        str(m.get("label")): m for m in (results or {}).get("models", []) if isinstance(m, dict)
    }
    labels: list[str] = [label for label in stored if any(label in s.outputs for s in samples)]
    for s in samples:
        labels += [label for label in s.outputs if label not in labels]
    models = []
    for label in labels:
        scores = score_samples(samples, label, seed=seed, n_bootstrap=n_bootstrap)
        entry: dict[str, Any] = {"label": label, "samples": scores.samples, **scores_json(scores)}
        old = stored.get(label)
        if old is not None:
            old_metrics = old.get("metrics") or {}
            matches: dict[str, bool] = {
                key: _metric_matches(scores.metrics[key], old_metrics.get(key))
                for key in KEYS
                if key in old_metrics
            }
            for sig in SIGNATURES:
                if old.get(sig) is not None:
                    matches[sig] = old.get(sig) == entry[sig]
            entry["matches"] = matches
        per_sample_same = sum(
            1
            for s, row in zip([s for s in samples if label in s.outputs], scores.per_sample, strict=True)
            if label in s.scores and all(_same(s.scores[label].get(k), v) for k, v in row.items())
        )
        entry["per_sample_matches"] = per_sample_same
        models.append(entry)
    return {
        "run": str(folder),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "samples": len(samples),
        "results_json": results is not None,
        "models": models,
    }


def _print_rescore(report: dict[str, Any]) -> bool:
    """Print the re-scoring; True when every stored number was reproduced."""
    print(
        f"re-scored {report['samples']} saved samples of {report['run']} "
        f"(seed {report['seed']}, {report['n_bootstrap']} bootstrap resamples)"
    )
    if not report["results_json"]:
        print("no results.json beside samples.jsonl: nothing to compare with")
    ok = True
    for entry in report["models"]:
        print(f"\n{entry['label']} ({entry['samples']} samples)")
        matches = entry.get("matches")
        for key in KEYS:
            line = metric_line(key, entry[key])
            if matches is not None and key in matches:
                line += "  matches results.json" if matches[key] else "  DIFFERS from results.json"
            print(line)
        for sig, name in (
            ("bleu_signature", "BLEU"),
            ("chrf_signature", "chrF"),
            ("chrf_pp_signature", "chrF++"),
        ):
            note = ""
            if matches is not None and sig in matches:
                note = "  (matches)" if matches[sig] else "  (DIFFERS from results.json)"
            print(f"  {name} signature: {entry[sig]}{note}")
        if matches is None:
            if report["results_json"]:
                print("  (this model is not in results.json)")
        elif all(matches.values()):
            print(f"  all {len(matches)} stored numbers reproduced exactly")
        else:
            ok = False
            bad = ", ".join(k for k, v in matches.items() if not v)
            print(f"  not reproduced: {bad}")
    return ok


# ------------------------------------------------------------------------------------ run
def run(args: argparse.Namespace) -> int:
    if args.eval_run is not None:
        if args.predictions is not None or args.references:
            raise CliError(
                "give either EVAL_RUN or --predictions/--references, not both. Fix: drop one of them."
            )
        folder = _eval_dir(args.eval_run)
        report = rescore_run(folder, args.seed)
        if args.json:
            print(json.dumps(report, ensure_ascii=False))
            return 0 if all(all(e.get("matches", {}).values()) for e in report["models"]) else 1
        return 0 if _print_rescore(report) else 1
    predictions, references = _files(args)
    from engine.eval.scoring import score_generation

    seed = args.seed if args.seed is not None else 0
    try:
        scores = score_generation(predictions, references, seed=seed)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        record = {
            **scores_json(scores),
            "settings": {
                "samples": scores.samples,
                "references": len(args.references),
                "seed": seed,
                "n_bootstrap": scores.n_bootstrap,
            },
        }
        print(json.dumps(record, ensure_ascii=False))
        return 0
    plural = "s" if len(args.references) != 1 else ""
    print(
        f"scored {scores.samples} predictions against {len(args.references)} reference{plural} each "
        f"(seed {seed}, {scores.n_bootstrap} bootstrap resamples)"
    )
    print_scores(scores)
    return 0
