"""Loading conversations: spec → rows → conversations → validated, the one call fine-tuning makes.

Each step is its own module (:mod:`.spec`, :mod:`.sources`, :mod:`.formats`, :mod:`.oasst`,
:mod:`.conversation`); this one only chains them and stops at the first problem.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from engine.config.errors import ConfigError
from engine.finetune.chat_data.conversation import Conversation, Located, validate_conversation
from engine.finetune.chat_data.formats import ROW_CONVERTERS, resolve_format
from engine.finetune.chat_data.oasst import oasst_threads
from engine.finetune.chat_data.sources import checked_files, read_rows
from engine.finetune.chat_data.spec import ChatDataSpec, parse_chat_spec


def load_conversations(spec: ChatDataSpec | str, *, field_name: str = "data") -> list[Conversation]:
    """Load, convert and validate every conversation, in the source's order.

    The first problem found stops the load with a :class:`ConfigError` that names the row; a data
    set is never trained on half-checked.
    """
    if isinstance(spec, str):
        spec = parse_chat_spec(spec, field_name=field_name)
    files = checked_files(spec, field_name)
    fmt = None
    if spec.kind == "embedded":
        from engine.finetune.embedded_chat import embedded_conversations

        pairs: Iterable[Located] = (
            (f"embedded conversation {i}", conv) for i, conv in enumerate(embedded_conversations(), 1)
        )
    else:
        rows = read_rows(spec, files, field_name)
        first = next(rows, None)
        if first is None:
            raise _no_conversations(spec, None, field_name)
        fmt, column = resolve_format(spec, first, field_name)
        pairs = convert_rows(itertools.chain([first], rows), fmt, column, spec.lang, field_name)
    out: list[Conversation] = []
    for where, conv in pairs:
        if spec.limit is not None and len(out) >= spec.limit:
            break
        out.append(validate_conversation(conv, where, field_name=field_name))
    if not out:
        raise _no_conversations(spec, fmt, field_name)
    return out


def _no_conversations(spec: ChatDataSpec, fmt: str | None, field_name: str) -> ConfigError:
    label = spec.to_string()
    if fmt == "oasst":
        why = (
            f"no message tree in language {spec.lang!r} has an assistant reply that survives the "
            "filters (deleted messages and failed reviews are skipped). Fix: check ?lang= (e.g. "
            "`lang=all` keeps every language) or the file's contents."
        )
    else:
        why = "the source holds no rows. Fix: check the file or split is the one you meant."
    return ConfigError(field_name, f"chat data {label!r} gave no conversations: {why}")


def convert_rows(
    rows: Iterable[Located], fmt: str, column: str, lang: str, field_name: str
) -> Iterator[Located]:
    """Rows to ``(where, conversation)``: one per row, or one per message tree for ``oasst``."""
    if fmt == "oasst":
        yield from oasst_threads(rows, column, lang, field_name)
        return
    convert = ROW_CONVERTERS[fmt]
    for where, row in rows:
        yield where, convert(row, column, where, field_name)
