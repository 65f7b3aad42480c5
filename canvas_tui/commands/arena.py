"""``canvas arena MODEL_A MODEL_B [MODEL_C]``: blind votes in the console; ``canvas arena ratings``:
the Bradley–Terry ratings of every battle so far (:mod:`engine.eval.arena`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

USAGE = (
    "canvas arena MODEL_A MODEL_B [MODEL_C] [--checkpoint best|last|STEP]\n"
    "       canvas arena ratings [--battles FILE] [--json] [--anchor MODEL] [--seed S]"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "arena",
        usage=USAGE,
        help="blind side-by-side votes between models; `canvas arena ratings` for their ratings",
        description="With two or three MODELs (each a run: id, id prefix or name; a model folder; or a "
        "cached Hub id), open the console on the Arena screen: a prompt (typed, or drawn with ctrl+n "
        "from held-out conversation openings and a small general set) goes to two of the models "
        "picked at random, shown as A and B in random order; vote 1 (A better), 2 (B better), "
        "3 (tie) or 4 (both bad), and only then are the names revealed. Battles are appended to "
        "<home>/arena/battles.jsonl. `canvas arena ratings` fits Bradley–Terry ratings to them as "
        "Chatbot Arena does (maximum likelihood, scale 400, base 10, a tie half a win, one model "
        "anchored at 1000) with 95% intervals from 1,000 seeded bootstrap rounds, and prints the "
        "pairwise win fractions. (A model literally named `ratings`: write ./ratings.)",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="two or three models, or `ratings`")
    p.add_argument(
        "--checkpoint", metavar="best|last|STEP", help="which checkpoint of a run, for every MODEL"
    )
    p.add_argument("--battles", metavar="FILE", type=Path, help="ratings: read battles from FILE")
    p.add_argument("--json", action="store_true", help="ratings: print JSON")
    p.add_argument(
        "--anchor", metavar="MODEL", help="ratings: the model pinned at 1000 (default: first by name)"
    )
    p.add_argument("--seed", metavar="S", type=int, default=0, help="ratings: bootstrap seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from canvas_tui.cli import CliError

    if args.models[0] == "ratings":
        if len(args.models) > 1:
            raise CliError(
                f"`canvas arena ratings` takes no models (got {' '.join(args.models[1:])}). "
                "Fix: drop them; --anchor MODEL picks the model pinned at 1000."
            )
        if args.checkpoint:
            raise CliError("--checkpoint is for the arena itself, not `ratings`. Fix: drop it.")
        return ratings(args)
    for flag, given in (("--battles", args.battles), ("--json", args.json), ("--anchor", args.anchor)):
        if given:
            raise CliError(f"{flag} is for `canvas arena ratings`. Fix: `canvas arena ratings {flag} …`.")
    return open_arena(args)


def ratings(args: argparse.Namespace) -> int:
    from canvas_tui.cli import CliError
    from engine.eval.arena import ArenaError, battles_path, fit_ratings, format_ratings, read_battles

    path = args.battles.expanduser() if args.battles is not None else battles_path()
    if args.battles is not None and not path.is_file():
        raise CliError(f"--battles: no file at {path}. Fix: give the path of a battles.jsonl.")
    battles = read_battles(path)
    note = f"({battles.skipped} unreadable line(s) skipped)" if battles.skipped else ""
    if not battles:
        if args.json:
            print(json.dumps({"ratings": {}, "win_fraction": {}, "battles": {}, "n_battles": 0}))
            return 0
        print(
            f"No battles yet in {path}{' ' + note if note else ''}. Vote in the arena first: "
            "`canvas arena MODEL_A MODEL_B`."
        )
        return 0
    try:
        fitted = fit_ratings(battles, anchor=args.anchor, seed=args.seed)
    except ArenaError as exc:
        raise CliError(f"--{exc.field}: {exc}" if exc.field == "anchor" else str(exc)) from None
    if args.json:
        out = fitted.to_json()
        out["file"] = str(path)
        out["skipped_lines"] = battles.skipped
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"{path}{' ' + note if note else ''}")
    print(format_ratings(fitted))
    return 0


def choices(args: argparse.Namespace) -> list:
    """The arena's models for these arguments; CliError for fewer than two or more than three."""
    from canvas_tui.chat_models import choice_for
    from canvas_tui.cli import CliError

    if not 2 <= len(args.models) <= 3:
        raise CliError(
            f"{len(args.models)} model(s) given; the arena needs two or three "
            "(each battle pits two of them). Fix: `canvas arena MODEL_A MODEL_B [MODEL_C]`."
        )
    return [choice_for(ref, args.checkpoint) for ref in args.models]


def open_arena(args: argparse.Namespace) -> int:
    from canvas_tui.cli import CliError

    picked = choices(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError(
            "the arena needs an interactive terminal (stdin and stdout are not a TTY). "
            "From scripts use `canvas arena ratings` to read the ratings."
        )
    from canvas_tui.app import CanvasApp

    CanvasApp(arena_choices=picked).run()
    return 0
