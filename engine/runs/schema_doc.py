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

from engine.docblock import DocBlock, cell, summary, table
from engine.runs import events, meta


def run_json_table() -> str:
    """The fields of run.json: name, type, meaning."""
    rows = [
        [f"`{name}`", cell(meta.type_name(meta.field_type(name))), cell(meta.field_doc(name))]
        for name in meta.field_names()
    ]
    lines = [
        f"`run.json`, schema {meta.RUN_SCHEMA_VERSION} (`schema` in the file). A missing field reads "
        "as its default; fields a newer version added are kept when the file is rewritten.",
        "",
        *table(["field", "type", "meaning"], rows),
    ]
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
    return cell(", ".join(parts))


def events_table() -> str:
    """Every known event type: its fields with their types, and what it says."""
    rows = [
        [f"`{name}`", _event_fields(cls), summary(cls.__doc__)] for name, cls in events.EVENT_TYPES.items()
    ]
    lines = [
        f"`events.jsonl`, schema {events.SCHEMA_VERSION}: one JSON object a line, "
        f'`{{"v": {events.SCHEMA_VERSION}, "t": <unix seconds>, "type": "<type>", ...fields}}`. '
        "Bold fields are always there; the others may be null or missing, and readers skip "
        "types and fields they do not know.",
        "",
        *table(["type", "fields", "what it says"], rows),
    ]
    return "\n".join(lines)


def body() -> list[str]:
    """The block's text: the run.json table, then the events table."""
    return [run_json_table(), "", events_table()]


BLOCK = DocBlock(
    "schema",
    "engine.runs.schema_doc",
    "engine/runs/meta.py and engine/runs/events.py",
    body,
    what="schema",
    stale="the run.json / events.jsonl schema tables differ from the code; "
    "regenerate them with `{regenerate}`.",
    description=__doc__,
)
BEGIN, END, REGENERATE = BLOCK.begin, BLOCK.end, BLOCK.regenerate
render, current_block, write, main = BLOCK.render, BLOCK.current, BLOCK.write, BLOCK.main


if __name__ == "__main__":
    sys.exit(main())
