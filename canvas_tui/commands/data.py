"""``canvas data``: prepare token files from a data spec, list the presets, check a spec.

Torch-free and ``datasets``-free at import: the engine's data modules are imported when a
sub-command runs. Progress goes to stderr as a one-line bar (redrawn in place on a terminal,
a line per stage when redirected), the manifest summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from engine.data.progress import DataProgress
from engine.data.spec import DEFAULT_SPEC, PRESETS, parse_spec, validate_spec

GRAMMAR = """\
SPEC    := SOURCE ("," SOURCE)*
SOURCE  := [WEIGHT "*"] TARGET ["#" COLUMN] ["?" KEY=VALUE ("&" KEY=VALUE)*]
TARGET  := embedded | PRESET | hf:NAME[:CONFIG][@SPLIT] | PATH (file, folder or glob)
options : limit=N  streaming=1  column=  split=  config=  revision=  weight=W
          sample_by=document|paragraph|line   (.txt: what one document is)
          errors=replace   (accept a file with NUL bytes or >2% invalid UTF-8, bytes replaced)
examples: embedded   owt+c4   hf:allenai/c4:en?limit=1000&streaming=1   0.7*notes/*.md,0.3*books.jsonl#body"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="prepare training data (sources, tokenizer, token files)",
        description="Prepare training data: load sources, train or adopt a "
        "tokenizer, pack token files. Data specs:\n\n" + GRAMMAR,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    prep = sub.add_parser("prepare", help="prepare (or reuse from the cache) token files for a spec")
    prep.add_argument(
        "--data",
        metavar="SPEC",
        default=DEFAULT_SPEC,
        help=f"what to train on (default: {DEFAULT_SPEC}, the offline corpus)",
    )
    prep.add_argument(
        "--vocab-size",
        type=int,
        default=4096,
        metavar="N",
        help="vocabulary of the trained byte-level BPE (default 4096, the tiny preset)",
    )
    prep.add_argument(
        "--tokenizer",
        metavar="PATH_OR_NAME",
        help="use this tokenizer (folder, tokenizer.json or Hub name) instead of training one",
    )
    prep.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        metavar="F",
        help="share of documents held out for validation (default 0.02)",
    )
    prep.add_argument("--seed", type=int, default=None, help="seed for the split and mixing (default 1337)")
    prep.add_argument(
        "--num-proc", type=int, default=None, metavar="N", help="tokenizing processes (default: automatic)"
    )
    prep.add_argument("--force", action="store_true", help="prepare again even if cached")
    prep.add_argument("--json", action="store_true", help="print the manifest as JSON")
    prep.set_defaults(func=_prepare)

    src = sub.add_parser("sources", help="list the named presets and the spec grammar")
    src.set_defaults(func=_sources)

    chk = sub.add_parser(
        "check",
        help="check a spec and read its local files (every JSON line, the column, the bytes)",
        description="Check a data spec and read every local file it names: a line that is not JSON, "
        "a missing column, NUL bytes or more than 2% invalid UTF-8 are errors (exit status 2), "
        "naming the file and line. Hub sources are not downloaded.",
    )
    chk.add_argument("--data", metavar="SPEC", default=DEFAULT_SPEC)
    chk.add_argument(
        "--quick",
        action="store_true",
        help="only check the spec's syntax and that its files exist and are not empty (reads nothing)",
    )
    chk.set_defaults(func=_check)

    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


class ProgressBar:
    """Draws :class:`DataProgress` on a stream: in place on a terminal, one line per stage otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_key: tuple[str, str] | None = None
        self._last_line_at = 0.0
        self._open = False

    def __call__(self, p: DataProgress) -> None:
        line = format_progress(p, self.width)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._open = True
            if p.stage == "done":
                self.stream.write("\n")
                self._open = False
        else:
            key = (p.stage, p.message)
            now = time.monotonic()
            if key == self._last_key and now - self._last_line_at < 5 and p.stage != "done":
                return
            self._last_key, self._last_line_at = key, now
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def format_progress(p: DataProgress, width: int = 24) -> str:
    """``tokenize [#####.....]  42%  12,345 docs  3.4M tok  7.1 MB/s  ETA 0:12  message``."""
    parts = [f"{p.stage:9s}"]
    fraction = p.fraction
    if fraction is not None:
        filled = round(fraction * width)
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%")
    if p.documents:
        parts.append(f"{p.documents:,} docs")
    if p.tokens:
        parts.append(f"{_human(p.tokens)} tok")
    if p.bytes_done and p.elapsed_s > 0:
        parts.append(f"{p.mb_per_s:.1f} MB/s")
    if p.eta_s is not None and p.stage != "done":
        parts.append(f"ETA {int(p.eta_s) // 60}:{int(p.eta_s) % 60:02d}")
    if p.message:
        parts.append(p.message)
    return "  ".join(parts)


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _prepare(args: argparse.Namespace) -> int:
    from engine.data.packing import DEFAULT_SEED, DEFAULT_VAL_FRACTION, prepare
    from engine.data.tokenizer import TokenizerConfig

    spec = validate_spec(parse_spec(args.data, field_name="--data"), field_name="--data")
    tok = TokenizerConfig(vocab_size=args.vocab_size, pretrained=args.tokenizer)
    bar = ProgressBar()
    try:
        prepared = prepare(
            spec,
            tok,
            progress=bar,
            num_proc=args.num_proc,
            force=args.force,
            val_fraction=DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction,
            seed=DEFAULT_SEED if args.seed is None else args.seed,
        )
    finally:
        bar.close()
    if args.json:
        print(
            json.dumps(
                {"path": str(prepared.root), "cached": prepared.cached, **prepared.manifest.to_dict()},
                indent=2,
            )
        )
    else:
        print(prepared.summary())
    return 0


def _sources(args: argparse.Namespace) -> int:
    print("Named sources (use with --data NAME; combine with commas):")
    for preset in PRESETS.values():
        print(f"  {preset.name:12s} {preset.summary}")
        if preset.spec != preset.name:
            print(f"  {'':12s}   = {preset.spec}")
    print("\nSpec grammar:")
    print("\n".join("  " + line for line in GRAMMAR.splitlines()))
    return 0


def _check(args: argparse.Namespace) -> int:
    spec = validate_spec(parse_spec(args.data, field_name="--data"), field_name="--data")
    if args.quick:
        print(f"ok (spec only, files not read): {spec.to_string()}")
        for source in spec.sources:
            print(f"  {source.kind:8s} {source.to_string()}")
        return 0
    from engine.data.check import check_data

    bar = ProgressBar()
    try:
        reports = check_data(spec, progress=bar, field_name="--data")
    finally:
        bar.close()
    print(f"ok: {spec.to_string()}")
    for report in reports:
        source = report.source
        print(f"  {source.kind:8s} {source.to_string()}")
        for file in report.files:
            print(f"           {file.describe()}")
        if source.kind == "hf":
            print("           (on the Hub: not downloaded by a check)")
    return 0
