"""The README's table of the inference worker's protocol, generated from
:mod:`engine.serve.protocol` so it cannot drift. Torch-free.

``python -m engine.serve.protocol_doc --write README.md`` regenerates the block between
:data:`BEGIN` and :data:`END`; ``--check README.md`` exits 1 when it is stale (a test runs it).
"""

from __future__ import annotations

import dataclasses
import sys

from engine.docblock import DocBlock
from engine.serve import protocol

BEGIN = "<!-- protocol:begin -->"
END = "<!-- protocol:end -->"
REGENERATE = "python -m engine.serve.protocol_doc --write README.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _summary(doc: str | None) -> str:
    paragraph = (doc or "").strip().split("\n\n")[0]
    return _cell(paragraph.replace("``", "`"))


def _type(hint: object) -> str:
    return str(hint).replace("typing.", "").replace("list[Message]", "list[{role, content}]")


def _fields(cls: type) -> str:
    parts = []
    for f in dataclasses.fields(cls):
        if f.name == "id":
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required:
            parts.append(f"**`{f.name}`** {_type(f.type)}")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            parts.append(f"`{f.name}` {_type(f.type)} = {default!r}".replace("'", '"'))
    return _cell(", ".join(parts)) or "—"


def render() -> str:
    lines = [
        BEGIN,
        f"<!-- generated from engine/serve/protocol.py by `{REGENERATE}` -->",
        "",
        f"Protocol version {protocol.PROTOCOL_VERSION}: one JSON object a line, each with "
        f'`"v": {protocol.PROTOCOL_VERSION}` and the `"id"` of the request (chosen by the client, '
        "echoed by every reply to it). Bold fields are required.",
        "",
        "| request (`op`) | fields | what it does |",
        "|---|---|---|",
    ]
    for op, cls in protocol.REQUEST_TYPES.items():
        lines.append(f"| `{op}` | {_fields(cls)} | {_summary(cls.__doc__)} |")
    lines += ["", "| reply (`type`) | fields | what it says |", "|---|---|---|"]
    for name, rcls in protocol.REPLY_TYPES.items():
        lines.append(f"| `{name}` | {_fields(rcls)} | {_summary(rcls.__doc__)} |")
    lines.append(END)
    return "\n".join(lines)


BLOCK = DocBlock(
    BEGIN,
    END,
    render,
    prog="python -m engine.serve.protocol_doc",
    what="protocol",
    stale=f"the protocol table is stale; run `{REGENERATE}`.",
    description=__doc__,
)
current_block, write, main = BLOCK.current, BLOCK.write, BLOCK.main


if __name__ == "__main__":
    sys.exit(main())
