"""``canvas console [--run RUN]`` (and plain ``canvas``): open the Textual console."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console",
        help="open the console: runs, live dashboards, new runs (what plain `canvas` does)",
        description="Open the Neural Canvas console. Quitting it never stops a run; opening it again "
        "re-attaches to every run from its run directory.",
    )
    p.add_argument("--run", metavar="RUN", help="open this run's dashboard (id, id prefix or name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from canvas_tui.cli import CliError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError(
            "the console needs an interactive terminal (stdin and stdout are not a TTY). "
            "From scripts use `canvas runs`, `canvas logs RUN -f` or `canvas demo`."
        )
    from canvas_tui.app import CanvasApp

    app = CanvasApp(run_ref=getattr(args, "run", None))
    app.run()
    if app.return_code or app.crash_console.crashed:
        from canvas_tui.crash import crash_message

        crashed = app.crash_console
        print(f"canvas: error: {crash_message(crashed.summary, crashed.report)}", file=sys.stderr)
        return app.return_code or 1
    return 0
