"""The README's tables of ``run.json`` and ``events.jsonl``, generated from the code so they cannot
drift. Torch-free.

The fields, types and meanings come from :class:`engine.runs.meta.RunMeta` and the event
dataclasses of :mod:`engine.runs.events`; the README holds the output between :data:`BEGIN` and
:data:`END`. ``python -m engine.runs.schema_doc --write README.md`` regenerates that block,
``--check README.md`` exits 1 when it differs (a test runs the check), and without either the
block is printed.
"""

from __future__ import annotations

import dataclasses
import sys
import typing

from engine.docblock import DocBlock
from engine.runs import events, meta

BEGIN = "<!-- schema:begin -->"
END = "<!-- schema:end -->"
REGENERATE = "python -m engine.runs.schema_doc --write README.md"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _summary(doc: str | None) -> str:
    """A docstring's first paragraph as Markdown (reST ``code`` becomes `code`)."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split()).replace("``", "`")


def run_json_table() -> str:
    """The fields of run.json: name, type, meaning."""
    lines = [
        f"`run.json`, schema {meta.RUN_SCHEMA_VERSION} (`schema` in the file). A missing field reads "
        "as its default; fields a newer version added are kept when the file is rewritten.",
        "",
        "| field | type | meaning |",
        "|---|---|---|",
    ]
    for name in meta.field_names():
        lines.append(
            f"| `{name}` | {_cell(meta.type_name(meta.field_type(name)))} | {_cell(meta.field_doc(name))} |"
        )
    return "\n".join(lines)


def _event_fields(cls: type[events.Event]) -> str:
    hints = typing.get_type_hints(cls)
    required = set(events.required_fields(cls.TYPE))
    parts = []
    for f in dataclasses.fields(cls):
        if f.name == "t":
            continue
        label = f"**`{f.name}`**" if f.name in required else f"`{f.name}`"
        parts.append(f"{label} {meta.type_name(hints[f.name], null=False)}")
    return _cell(", ".join(parts))


def events_table() -> str:
    """Every known event type: its fields with their types, and what it says."""
    lines = [
        f"`events.jsonl`, schema {events.SCHEMA_VERSION}: one JSON object a line, "
        f'`{{"v": {events.SCHEMA_VERSION}, "t": <unix seconds>, "type": "<type>", ...fields}}`. '
        "Bold fields are always there; the others may be null or missing, and readers skip "
        "types and fields they do not know.",
        "",
        "| type | fields | what it says |",
        "|---|---|---|",
    ]
    for name, cls in events.EVENT_TYPES.items():
        lines.append(f"| `{name}` | {_event_fields(cls)} | {_cell(_summary(cls.__doc__))} |")
    return "\n".join(lines)


def render() -> str:
    """The whole generated block, markers included."""
    return "\n".join(
        [
            BEGIN,
            f"<!-- generated from engine/runs/meta.py and engine/runs/events.py by `{REGENERATE}` -->",
            "",
            run_json_table(),
            "",
            events_table(),
            END,
        ]
    )


BLOCK = DocBlock(
    BEGIN,
    END,
    render,
    prog="python -m engine.runs.schema_doc",
    what="schema",
    stale="the run.json / events.jsonl schema tables differ from the code; "
    f"regenerate them with `{REGENERATE}`.",
    description=__doc__,
)
current_block, write, main = BLOCK.current, BLOCK.write, BLOCK.main


if __name__ == "__main__":
    sys.exit(main())
