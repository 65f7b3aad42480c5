"""``canvas eval MODEL [MODEL …]``: perplexity, ROUGE, BLEU and chrF of models, as a run of kind ``eval``.

The evaluation is a detached engine process (``python -m engine.eval.worker``) like every run:
listed by ``canvas runs``, followed by ``canvas logs``, stopped by ``canvas stop``; its results
are ``results.json`` and ``samples.jsonl`` in its run directory, and each evaluated run lists it
(``evals`` in its run.json). Without ``--detach`` this command follows the progress on stderr and
then prints the table (or, with ``--json``, one JSON object). Torch-free: the engine does the work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
from typing import Any, TextIO

from canvas_tui.cli import CliError
from canvas_tui.commands.follow import follow_events, log_tail_text, show_checked
from engine.config.errors import ConfigError
from engine.runs.store import RunStoreError

#: The per-model keys of ``--json`` (each metric as {"value", "ci95"}), in order.
JSON_METRICS = (
    "perplexity",
    "word_perplexity",
    "byte_perplexity",
    "bits_per_byte",
    "reply_perplexity",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "bleu",
    "chrf",
    "chrf_pp",
)

#: Table columns: (metric, header).
COLUMNS = (
    ("bits_per_byte", "bits/byte"),
    ("perplexity", "ppl"),
    ("reply_perplexity", "reply ppl"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("rougeLsum", "ROUGE-Lsum"),
    ("bleu", "BLEU"),
    ("chrf", "chrF"),
    ("chrf_pp", "chrF++"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate models: perplexity, bits per byte, ROUGE, BLEU, chrF (an `eval` run)",
        description="Evaluate each MODEL (a run id, prefix or name, a model folder, or a cached Hub id) "
        "on held-out text: perplexity the way lm-evaluation-harness computes it (bits per byte compares "
        "tokenizers), and greedy generation scored with ROUGE (rouge-score), BLEU and chrF (sacrebleu), "
        "with seeded 95% bootstrap intervals and paired comparisons between the models. Without --data "
        "each run reads its own held-out split; with --data SPEC every model reads the same text.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="run id/prefix/name, model folder or Hub id")
    p.add_argument(
        "--checkpoint", metavar="best|last|STEP", help="which checkpoint of the runs (default: best)"
    )
    p.add_argument("--data", metavar="SPEC", help="a data spec: the same text for every model")
    p.add_argument(
        "--samples",
        type=int,
        default=100,
        metavar="N",
        help="documents / conversations per text (default 100)",
    )
    p.add_argument(
        "--tasks",
        default="perplexity,generation",
        metavar="perplexity,generation",
        help="which tasks (comma list; default both)",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="sample choice and bootstrap seed (default 0)"
    )
    p.add_argument("--with-base", action="store_true", help="also score each fine-tune with its adapter off")
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=64,
        metavar="P",
        help="generation prompt: first P tokens (default 64)",
    )
    p.add_argument("--new-tokens", type=int, default=64, metavar="C", help="tokens to generate (default 64)")
    p.add_argument("--device", default="auto", help="auto (the GPU when free enough), cpu or cuda")
    p.add_argument("--name", help="a name for the run (default: eval-<id suffix>)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--detach", action="store_true", help="print the run id and return at once")
    p.set_defaults(func=run)


def _flagged(exc: ConfigError) -> ConfigError:
    """The error with the flag named as this command spells it."""
    from engine.eval.launch import FLAGS

    flag = FLAGS.get(exc.field, exc.field)
    if flag in exc.message:
        return exc
    return ConfigError(exc.field, f"{flag}: {exc.message}")


def run(args: argparse.Namespace) -> int:
    from engine.eval import launch

    cfg = launch.EvalConfig(
        models=tuple(args.models),
        checkpoint=args.checkpoint,
        data=args.data,
        samples=args.samples,
        tasks=launch.parse_tasks(args.tasks) if isinstance(args.tasks, str) else tuple(args.tasks),
        seed=args.seed,
        with_base=args.with_base,
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        device=args.device,
    )
    try:
        started = launch.start(cfg, args.name)
    except ConfigError as exc:
        raise _flagged(exc) from None
    except RunStoreError as exc:
        raise CliError(str(exc)) from None
    show_checked(started.checked)
    run_dir = started.run
    if args.detach:
        print(run_dir.id, flush=True)
        print(
            f"started eval run {run_dir.id} in the background: `canvas logs {run_dir.id} -f` follows it, "
            f"`canvas stop {run_dir.id}` stops it; its results land in {run_dir.path / 'results.json'}.",
            file=sys.stderr,
        )
        return 0
    print(f"eval run {run_dir.id}", file=sys.stderr, flush=True)
    state = follow(run_dir, sys.stderr)
    if state != "finished":
        return 130 if state == "interrupted" else 1
    from engine.eval.results import ResultsError, read_results

    try:
        results = read_results(run_dir.path)
    except ResultsError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(to_cli_json(results, run_dir.id), indent=2, ensure_ascii=False))
    else:
        print(render_table(results))
    return 0


def follow(run_dir: Any, stream: TextIO) -> str:
    """Show progress until the run ends; its final state (``interrupted``: left running).

    Ctrl-C stops the evaluation (no results are written); a second one leaves it running."""
    from engine.runs import run_status
    from engine.runs.control import stop_run
    from engine.runs.events import Log, Progress
    from engine.runs.format import format_event, plain

    tty = stream.isatty()
    open_line = False
    last_phase = ""

    def line(text: str) -> None:
        nonlocal open_line
        if open_line:
            stream.write("\r\x1b[2K")
            open_line = False
        stream.write(plain(text) + "\n")
        stream.flush()

    def handle(event: Any) -> None:
        nonlocal open_line, last_phase
        if isinstance(event, Progress):
            if tty:
                width = shutil.get_terminal_size((100, 20)).columns
                stream.write("\r\x1b[2K" + plain(format_event(event))[: width - 1])
                open_line = True
            elif event.phase != last_phase:
                line(format_event(event))
            last_phase = event.phase
        elif isinstance(event, Log):
            line(format_event(event))
        stream.flush()

    def stop() -> None:
        line(f"stopping eval run {run_dir.id} (Ctrl-C again to leave it running)…")
        with contextlib.suppress(RunStoreError):
            stop_run(run_dir)

    def detach() -> None:
        line(f"left eval run {run_dir.id} running: `canvas logs {run_dir.id} -f`.")

    if follow_events(run_dir, handle, stop=stop, detach=detach) is None:
        return "interrupted"
    status = run_status(run_dir, tail=12)
    if open_line:
        stream.write("\n")
    if status.state != "finished":
        message = f": {status.message}" if status.message else ""
        stream.write(f"eval run {run_dir.id} {status.state}{message}\n")
        tail = log_tail_text(status)
        if tail:
            stream.write(tail + "\n")
    stream.flush()
    return status.state


# ------------------------------------------------------------------------------ output
def to_cli_json(results: Any, run_id: str | None = None) -> dict[str, Any]:
    """The ``--json`` object: per model the metric keys (each {"value", "ci95"}), the signatures,
    ``tokens_per_s``; the settings; the comparisons."""
    models = []
    for m in results.models:
        entry: dict[str, Any] = {
            "label": m.label,
            "model": m.model,
            "kind": m.kind,
            "checkpoint": m.checkpoint,
            "adapter": m.adapter,
        }
        for key in JSON_METRICS:
            if key in m.metrics:
                entry[key] = m.metrics[key]
        entry["bleu_signature"] = m.bleu_signature
        entry["chrf_signature"] = m.chrf_signature
        entry["chrf_pp_signature"] = m.extra.get("chrf_pp_signature")
        entry["tokens_per_s"] = m.tokens_per_s
        entry["tokenizer"] = m.tokenizer
        entry["window"] = m.window
        entry["documents"] = m.documents
        entry["tokens"] = m.tokens
        entry["bytes"] = m.bytes
        models.append(entry)
    out: dict[str, Any] = {"models": models, "settings": results.settings}
    out["comparisons"] = [c.to_json() for c in results.comparisons]
    if run_id:
        out["run"] = run_id
    return out


def _num(x: Any) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


def _cell(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "-"
    ci = metric.get("ci95")
    text = _num(metric.get("value"))
    if ci:
        text += f" [{_num(ci[0])}, {_num(ci[1])}]"
    return text


def render_table(results: Any, width: int | None = None) -> str:
    """The results as plain text: one row per model, a column per metric (value [95% CI]), cut
    into blocks of columns that fit ``width`` (default: the terminal's), then the sacrebleu
    signatures and the verdict of every comparison."""
    from engine.runs.format import plain

    width = width or shutil.get_terminal_size((120, 24)).columns
    columns = [(k, h) for k, h in COLUMNS if any(k in m.metrics for m in results.models)]
    names = [plain(m.label) for m in results.models]
    cells = {k: [_cell(m.metrics.get(k)) for m in results.models] for k, _ in columns}
    name_w = max(len("model"), *(len(n) for n in names))
    lines: list[str] = []
    block: list[tuple[str, str]] = []

    def flush() -> None:
        if not block:
            return
        widths = [max(len(h), *(len(c) for c in cells[k])) for k, h in block]
        header = ["model".ljust(name_w), *(h.ljust(w) for (_, h), w in zip(block, widths, strict=True))]
        if lines:
            lines.append("")
        lines.append("  ".join(header).rstrip())
        lines.append("  ".join("-" * w for w in [name_w, *widths]))
        for i, name in enumerate(names):
            row = [
                name.ljust(name_w),
                *(cells[k][i].ljust(w) for (k, _), w in zip(block, widths, strict=True)),
            ]
            lines.append("  ".join(row).rstrip())
        block.clear()

    used = name_w
    for key, head in columns:
        w = max(len(head), *(len(c) for c in cells[key])) + 2
        if block and used + w > width:
            flush()
            used = name_w
        block.append((key, head))
        used += w
    flush()
    settings = results.settings
    lines.append("")
    lines.append(
        f"{settings.get('samples')} samples, seed {settings.get('seed')}, P={settings.get('prompt_tokens')} "
        f"C={settings.get('continuation_tokens')} greedy; 95% intervals: {settings.get('n_bootstrap')} "
        "bootstrap draws"
    )
    # One line per metric and distinct signature, named, so "which one is chrF++?" needs no guessing.
    signatures = dict.fromkeys(
        (name, s)
        for m in results.models
        for name, s in (
            ("BLEU", m.bleu_signature),
            ("chrF", m.chrf_signature),
            ("chrF++", m.extra.get("chrf_pp_signature")),
        )
        if isinstance(s, str) and s
    )
    for name, signature in signatures:
        lines.append(f"sacrebleu {name} signature: {plain(signature)}")
    verdicts = [c for c in results.comparisons if c.verdict]
    if verdicts:
        lines.append("")
        lines.extend(plain(c.verdict) for c in verdicts)
    return "\n".join(lines)
