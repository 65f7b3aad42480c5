"""The chat data spec: what ``canvas finetune --data SPEC`` names, parsed and checked without loading.

Torch-free and ``datasets``-free, so the console can parse and check a spec while the user types.
Built on the grammar the pre-training spec uses (:mod:`engine.data.grammar`)::

    SPEC    := TARGET ["?" KEY=VALUE ("&" KEY=VALUE)*]
    TARGET  := "embedded"                 conversations about Python, built offline (PSF licence)
             | "guanaco" | "oasst1"       the QLoRA paper's data / OpenAssistant's message trees
             | "hf:" NAME [":" CONFIG] ["@" SPLIT]    any Hugging Face Hub dataset
             | PATH                       .jsonl, .json or .parquet, a folder of them, or a
                                          Hub-style dataset folder

Options: ``format=`` one of :data:`FORMATS` (detected from the first row when absent),
``limit=N`` (the first N conversations), ``split=`` (default ``train``), ``lang=`` (``oasst``
only: the language of the first message, default ``en``; ``all`` keeps every language) and
``column=`` (the field that holds the messages or the text, when it is not the usual one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.config.errors import ConfigError
from engine.data import grammar

#: The row formats :mod:`engine.finetune.chat_data.formats` converts.
FORMATS = ("messages", "sharegpt", "guanaco", "oasst", "alpaca")
OPTION_KEYS = ("format", "column", "split", "lang", "limit", "errors")


@dataclass(frozen=True)
class ChatPreset:
    """A named data set: what it expands to, and the one line shown in logs and model cards."""

    name: str
    spec: str
    summary: str
    licence: str


PRESETS: dict[str, ChatPreset] = {
    p.name: p
    for p in (
        ChatPreset(
            "embedded",
            "embedded",
            "a few thousand conversations about Python built offline from CPython's own documentation "
            "(standard-library docstrings and pydoc_data.topics); no network",
            "PSF-2.0",
        ),
        ChatPreset(
            "guanaco",
            "hf:timdettmers/openassistant-guanaco?format=guanaco",
            "timdettmers/openassistant-guanaco on the Hugging Face Hub: the highest-rated threads of "
            "OpenAssistant's oasst1 as '### Human: … ### Assistant: …' text, the QLoRA paper's "
            "fine-tuning set (~9.8K train / ~0.5K test)",
            "Apache-2.0",
        ),
        ChatPreset(
            "oasst1",
            "hf:OpenAssistant/oasst1?format=oasst",
            "OpenAssistant/oasst1 on the Hugging Face Hub: human-written message trees in 35 languages, "
            "one thread per tree following the best-ranked replies",
            "Apache-2.0",
        ),
    )
}


@dataclass(frozen=True)
class ChatDataSpec:
    """A parsed chat data spec. ``kind`` is ``embedded``, ``hf`` (Hub) or ``local``.

    ``format`` None means "detect it from the first row"; ``column`` None means the format's usual field.
    """

    kind: str
    target: str = "embedded"
    config: str | None = None
    split: str = "train"
    format: str | None = None
    column: str | None = None
    lang: str = "en"
    limit: int | None = None
    preset: str | None = None
    errors: str = "check"  # "replace": accept a file with NUL or many invalid bytes (engine.data.check)

    def to_string(self) -> str:
        """The canonical string form; ``parse_chat_spec(s.to_string())`` gives ``s`` back."""
        if self.preset:
            body, base = self.preset, _expand_preset(self.preset)
        elif self.kind == "embedded":
            body, base = "embedded", ChatDataSpec(kind="embedded")
        elif self.kind == "hf":
            body = f"hf:{self.target}" + (f":{self.config}" if self.config else "")
            body += f"@{self.split}" if self.split != "train" else ""
            base = ChatDataSpec(kind="hf", target=self.target, config=self.config, split=self.split)
        else:
            body, base = self.target, ChatDataSpec(kind="local", target=self.target)
        options = [
            f"{key}={value}"
            for key in OPTION_KEYS
            if (value := getattr(self, key)) is not None and value != getattr(base, key)
        ]
        return body + ("?" + "&".join(options) if options else "")


def parse_chat_spec(text: str, *, field_name: str = "data") -> ChatDataSpec:
    """Parse the string form (see the module docstring); raises :class:`ConfigError` naming the problem."""
    raw = (text or "").strip()
    if not raw:
        raise ConfigError(
            field_name,
            "the chat data spec is empty. Fix: name the conversations to fine-tune on, e.g. "
            "`embedded` (offline), `guanaco`, `oasst1` or a file such as `./chats.jsonl`.",
        )
    body, options = _split_options(raw, field_name)
    values = _option_values(options, raw, field_name)
    lower = body.strip().lower()
    if lower == "embedded":
        extra = sorted(set(values) - {"limit"})
        if extra:
            raise ConfigError(
                field_name,
                f"chat data {raw!r}: the embedded conversations take only the limit option, not "
                f"{', '.join(extra)}. Fix: remove them, e.g. `embedded?limit=500`.",
            )
        return ChatDataSpec(kind="embedded", preset="embedded", **values)
    if lower in PRESETS:
        base = _expand_preset(lower)
        if "format" in values and values["format"] != base.format:
            raise ConfigError(
                field_name,
                f"chat data {raw!r}: the preset {lower} is always in the {base.format} format, not "
                f"{values['format']}. Fix: remove `format={values['format']}`, or name the dataset "
                f"itself (`hf:{base.target}?format=…`).",
            )
        spec = replace(base, **values)
    elif grammar.is_hub_target(body):
        hub = grammar.parse_hub_target(body, raw, field_name)
        spec = replace(ChatDataSpec(kind="hf", target=hub.name, config=hub.config, split=hub.split), **values)
    else:
        spec = replace(ChatDataSpec(kind="local", target=body.strip()), **values)
    return _consistent(spec, values, raw, field_name)


def _expand_preset(name: str) -> ChatDataSpec:
    """What a preset stands for, with ``preset`` set so that ``to_string`` writes the short name."""
    if name == "embedded":
        return ChatDataSpec(kind="embedded", preset="embedded")
    return replace(parse_chat_spec(PRESETS[name].spec), preset=name)


def _split_options(raw: str, field_name: str) -> tuple[str, dict[str, str]]:
    head, tail = grammar.split_options(raw)
    if tail is None or "=" not in tail:
        return raw, {}
    if not grammar.is_option_list(tail):
        raise ConfigError(
            field_name,
            f"chat data {raw!r}: the options after '?' ({tail!r}) are not KEY=VALUE pairs joined "
            "by '&'. Fix: e.g. `chats.jsonl?format=sharegpt&limit=1000`.",
        )
    return head, grammar.parse_options(tail)


def _option_values(options: Mapping[str, str], raw: str, field_name: str) -> dict[str, Any]:
    """Typed option values; unknown keys, empty values and bad numbers are errors that name them."""
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ConfigError(
            field_name,
            f"chat data {raw!r} has unknown option(s) {', '.join(unknown)}. "
            f"Fix: use only {', '.join(OPTION_KEYS)} (e.g. `?format=sharegpt&limit=1000`).",
        )
    values: dict[str, Any] = {}
    for key, value in options.items():
        value = value.strip()
        if not value:
            raise ConfigError(
                field_name,
                f"chat data {raw!r}: option {key} is empty. Fix: give it a value (`{key}=…`) "
                "or leave it out.",
            )
        if key == "limit":
            values[key] = grammar.positive_int(value, raw, field_name)
        elif key == "format":
            if value.lower() not in FORMATS:
                raise ConfigError(
                    field_name,
                    f"chat data {raw!r}: format={value!r} is not one of {', '.join(FORMATS)}. "
                    "Fix: e.g. `?format=sharegpt`, or leave it out to detect the format from the rows.",
                )
            values[key] = value.lower()
        elif key == "lang":
            values[key] = value.lower()
        elif key == "errors":
            from engine.data.check import check_errors_option

            values[key] = check_errors_option(value, raw, field_name)
        else:
            values[key] = value
    return values


def _consistent(spec: ChatDataSpec, given: Mapping[str, Any], raw: str, field_name: str) -> ChatDataSpec:
    """Options that cannot apply to the chosen format are errors, not silently ignored."""
    if "lang" in given and spec.format not in (None, "oasst"):
        raise ConfigError(
            field_name,
            f"chat data {raw!r}: lang= applies only to the oasst format (it filters message trees by "
            f"language), not to {spec.format}. Fix: remove `lang={given['lang']}`.",
        )
    if spec.column is not None and spec.format == "alpaca":
        raise ConfigError(
            field_name,
            f"chat data {raw!r}: column= does not apply to the alpaca format, which always reads "
            "instruction, input and output. Fix: remove `column=…` or rename the fields.",
        )
    return spec


def describe_source(spec: ChatDataSpec | str) -> str:
    """One line for logs and model cards: what the data is, and where it and its licence come from."""
    if isinstance(spec, str):
        spec = parse_chat_spec(spec)
    limit = f" (first {spec.limit:,} conversations)" if spec.limit else ""
    if spec.preset in PRESETS or spec.kind == "embedded":
        preset = PRESETS[spec.preset or "embedded"]
        split = f", split {spec.split}" if spec.kind == "hf" and spec.split != "train" else ""
        lang = f", language {spec.lang}" if spec.format == "oasst" else ""
        return f"{preset.name}: {preset.summary}{split}{lang}; licence {preset.licence}{limit}."
    fmt = spec.format or "format detected from the rows"
    if spec.kind == "hf":
        config = f", config {spec.config}" if spec.config else ""
        return (
            f"hf:{spec.target} ({fmt}{config}, split {spec.split}) from the Hugging Face Hub; "
            f"licence: see https://huggingface.co/datasets/{spec.target}{limit}."
        )
    return f"local conversations from {spec.target} ({fmt}); licence: as its owner states{limit}."
