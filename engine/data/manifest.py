"""``manifest.json`` of a prepared-data folder, as typed dataclasses.

The manifest says what a folder of token files holds: where it came from (spec, sources), how it
was cut (tokenizer, dtype, splits) and what it cost (timings). Packing writes it once; training,
the loader, the CLI and the console read it. Reading goes through :class:`Manifest` so that a
renamed or missing key is one error here, not a ``KeyError`` in five readers.

The JSON layout is the one the first version of packing wrote, key for key and in the same order,
so folders prepared before this module existed still open (and keep their cache key). Keys this
version does not know are kept in ``extra`` and written back unchanged.

Torch-free and ``datasets``-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The file name inside a prepared-data folder.
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class SplitInfo:
    """One token file: ``train.bin`` or ``val.bin``.

    ``text_bytes`` is known when the split was tokenized document by document; ``split_by`` is
    ``"tokens"`` when a single document was cut in two instead (and ``text_bytes`` is then absent).
    """

    file: str
    documents: int
    tokens: int
    text_bytes: int | None = None
    split_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "documents": self.documents, "tokens": self.tokens}
        if self.text_bytes is not None:
            out["text_bytes"] = self.text_bytes
        if self.split_by is not None:
            out["split_by"] = self.split_by
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitInfo:
        return cls(
            file=str(data["file"]),
            documents=int(data["documents"]),
            tokens=int(data["tokens"]),
            text_bytes=_opt_int(data.get("text_bytes")),
            split_by=data.get("split_by"),
        )


@dataclass(frozen=True)
class SourceInfo:
    """What one source of the spec contributed (after a weighted mix took its share)."""

    spec: str
    kind: str
    documents: int
    available_documents: int
    text_bytes: int
    invalid_utf8_bytes: int = 0
    first_invalid_utf8: str | None = None
    files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "documents": self.documents,
            "available_documents": self.available_documents,
            "text_bytes": self.text_bytes,
            "invalid_utf8_bytes": self.invalid_utf8_bytes,
            "first_invalid_utf8": self.first_invalid_utf8,
            "files": self.files,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceInfo:
        return cls(
            spec=str(data["spec"]),
            kind=str(data["kind"]),
            documents=int(data["documents"]),
            available_documents=int(data.get("available_documents", data["documents"])),
            text_bytes=int(data.get("text_bytes", 0)),
            invalid_utf8_bytes=int(data.get("invalid_utf8_bytes", 0)),
            first_invalid_utf8=data.get("first_invalid_utf8"),
            files=int(data.get("files", 0)),
        )


@dataclass(frozen=True)
class TokenizerRecord:
    """The tokenizer saved next to the token files (``source`` is ``trained`` or what was adopted)."""

    source: str
    vocab_size: int
    eos_id: int
    eos_token: str
    sha256: str
    dir: str = "tokenizer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "eos_token": self.eos_token,
            "sha256": self.sha256,
            "dir": self.dir,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerRecord:
        return cls(
            source=str(data["source"]),
            vocab_size=int(data["vocab_size"]),
            eos_id=int(data["eos_id"]),
            eos_token=str(data["eos_token"]),
            sha256=str(data["sha256"]),
            dir=str(data.get("dir", "tokenizer")),
        )


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` records about one prepared-data folder."""

    format: int
    key: str
    created: str
    spec: str
    spec_structured: dict[str, Any]
    sources: list[SourceInfo]
    val_fraction: float
    seed: int
    dtype: str
    separator: str
    splits: dict[str, SplitInfo]
    tokenizer: TokenizerRecord
    text_bytes: int
    tokenize_seconds: float | None = None
    tokenize_mb_per_s: float | None = None
    #: Wall time of the whole preparation; None until packing has finished.
    seconds: float | None = None
    #: Keys a newer version wrote that this one does not know: kept, and written back.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def documents(self) -> int:
        """Documents over all splits."""
        return sum(s.documents for s in self.splits.values())

    @property
    def tokens(self) -> int:
        """Tokens over all splits."""
        return sum(s.tokens for s in self.splits.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order packing has always written them."""
        out: dict[str, Any] = {
            "format": self.format,
            "key": self.key,
            "created": self.created,
            "spec": self.spec,
            "spec_structured": self.spec_structured,
            "sources": [s.to_dict() for s in self.sources],
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "dtype": self.dtype,
            "separator": self.separator,
            "splits": {name: s.to_dict() for name, s in self.splits.items()},
            "tokenizer": self.tokenizer.to_dict(),
            "text_bytes": self.text_bytes,
            "tokenize_seconds": self.tokenize_seconds,
            "tokenize_mb_per_s": self.tokenize_mb_per_s,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        for name, value in self.extra.items():
            out.setdefault(name, value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            format=int(data["format"]),
            key=str(data["key"]),
            created=str(data.get("created", "")),
            spec=str(data["spec"]),
            spec_structured=dict(data.get("spec_structured") or {}),
            sources=[SourceInfo.from_dict(s) for s in data.get("sources", [])],
            val_fraction=float(data["val_fraction"]),
            seed=int(data["seed"]),
            dtype=str(data["dtype"]),
            separator=str(data.get("separator", "eos-after-each-document")),
            splits={name: SplitInfo.from_dict(s) for name, s in data["splits"].items()},
            tokenizer=TokenizerRecord.from_dict(data["tokenizer"]),
            text_bytes=int(data.get("text_bytes", 0)),
            tokenize_seconds=_opt_float(data.get("tokenize_seconds")),
            tokenize_mb_per_s=_opt_float(data.get("tokenize_mb_per_s")),
            seconds=_opt_float(data.get("seconds")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> str:
        """The text of ``manifest.json`` (indented, newline-terminated, as always written)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.from_dict(json.loads(text))

    def write(self, folder: Path) -> Path:
        """Write ``folder/manifest.json`` and return its path."""
        path = Path(folder) / MANIFEST_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """Read ``folder/manifest.json``."""
        return cls.from_json((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))


def read_dtype(folder: Path) -> str | None:
    """The token dtype ``folder/manifest.json`` names, or None when there is no manifest.

    Only ``dtype`` is read, so a hand-made token file with a one-key manifest
    (``{"dtype": "uint32"}``) loads as well as a prepared folder.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    return str(json.loads(path.read_text(encoding="utf-8"))["dtype"])


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
