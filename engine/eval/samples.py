"""``samples.jsonl``: every generation sample of an eval run, one JSON object a line. Torch-free.

A line::

    {"index": 0, "task": "generation" | "reply", "source": "...", "prompt": "...", "reference": "...",
     "outputs": {label: text}, "scores": {label: {"rouge1": f, "rouge2": f, "rougeL": f,
     "rougeLsum": f, "chrf": f, "bleu": f}}}

Saved so that results can be re-scored later without generating again (``canvas score EVAL_RUN``).
Written whole through a temporary file and a rename; a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
TASKS = ("generation", "reply")


class SamplesError(ValueError):
    """A samples file that cannot be read: names the file, the line and what is wrong."""


@dataclass
class Sample:
    index: int
    task: str
    source: str
    prompt: str
    reference: str
    outputs: dict[str, str] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "task": self.task,
            "source": self.source,
            "prompt": self.prompt,
            "reference": self.reference,
            "outputs": dict(self.outputs),
            "scores": {label: dict(s) for label, s in self.scores.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Sample:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in ("index", "task", "prompt", "reference", "outputs") if k not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        outputs = data["outputs"]
        if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
            raise ValueError("'outputs' must map each model label to its text")
        scores = data.get("scores") or {}
        if not isinstance(scores, dict):
            raise ValueError("'scores' must map each model label to its scores")
        if not isinstance(data["reference"], str) or not isinstance(data["prompt"], str):
            raise ValueError("'prompt' and 'reference' must be strings")
        return cls(
            index=int(data["index"]),
            task=str(data["task"]),
            source=str(data.get("source", "")),
            prompt=data["prompt"],
            reference=data["reference"],
            outputs={str(k): v for k, v in outputs.items()},
            scores={str(k): {str(m): float(x) for m, x in dict(v).items()} for k, v in scores.items()},
        )


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    """Write all samples to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for sample in samples:
                fh.write(json.dumps(sample.to_json(), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_samples(path: Path) -> list[Sample]:
    """All samples in ``path``, in file order. SamplesError naming the line on a bad one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SamplesError(f"no samples file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplesError(f"cannot read {path}: {exc}") from None
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(Sample.from_json(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise SamplesError(f"{path}, line {number}: not a sample ({exc})") from None
    return out
