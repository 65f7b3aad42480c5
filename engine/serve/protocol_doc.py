"""The README's table of the inference worker's protocol, generated from
:mod:`engine.serve.protocol` so it cannot drift. Torch-free.

``python -m engine.serve.protocol_doc --write README.md`` regenerates the block between
:data:`BEGIN` and :data:`END`; ``--check README.md`` exits 1 when it is stale (a test runs it).
"""

from __future__ import annotations

import dataclasses
import sys

from engine.docblock import DocBlock, cell, summary, table
from engine.serve import protocol


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
    return cell(", ".join(parts)) or "—"


def body() -> list[str]:
    """The block's text: every request, then every reply, with its fields and what it does."""
    requests = [[f"`{op}`", _fields(cls), summary(cls.__doc__)] for op, cls in protocol.REQUEST_TYPES.items()]
    replies = [
        [f"`{name}`", _fields(cls), summary(cls.__doc__)] for name, cls in protocol.REPLY_TYPES.items()
    ]
    return [
        f"Protocol version {protocol.PROTOCOL_VERSION}: one JSON object a line, each with "
        f'`"v": {protocol.PROTOCOL_VERSION}` and the `"id"` of the request (chosen by the client, '
        "echoed by every reply to it). Bold fields are required.",
        "",
        *table(["request (`op`)", "fields", "what it does"], requests),
        "",
        *table(["reply (`type`)", "fields", "what it says"], replies),
    ]


BLOCK = DocBlock(
    "protocol",
    "engine.serve.protocol_doc",
    "engine/serve/protocol.py",
    body,
    what="protocol",
    stale="the protocol table is stale; run `{regenerate}`.",
    description=__doc__,
)
BEGIN, END, REGENERATE = BLOCK.begin, BLOCK.end, BLOCK.regenerate
render, current_block, write, main = BLOCK.render, BLOCK.current, BLOCK.write, BLOCK.main


if __name__ == "__main__":
    sys.exit(main())
