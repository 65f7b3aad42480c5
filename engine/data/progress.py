"""Progress of a long data preparation, as plain data both front ends can show.

Preparation (loading, tokenizer training, tokenization, writing shards) can take minutes on a real
corpus. The engine reports it through a callback rather than printing, so the same numbers become
a progress bar on the CLI (:mod:`canvas_tui.commands.data`) and ``data_progress`` events in a run's
``events.jsonl`` for the console. Torch-free and dependency-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

#: The stages in the order they run; ``fraction`` is only meaningful inside one stage.
STAGES = ("check", "load", "tokenizer", "tokenize", "done")


@dataclass(frozen=True)
class DataProgress:
    """One snapshot of a preparation: where it is, how much is done, how fast, how long to go."""

    stage: str
    message: str = ""
    documents: int = 0
    tokens: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    elapsed_s: float = 0.0

    @property
    def fraction(self) -> float | None:
        """Share of this stage's bytes done, or None when the total is unknown."""
        if self.bytes_total <= 0:
            return None
        return min(1.0, self.bytes_done / self.bytes_total)

    @property
    def mb_per_s(self) -> float:
        """Throughput of the stage in MB (10^6 bytes) of text per second."""
        return self.bytes_done / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, or None when it cannot be estimated yet."""
        if self.bytes_total <= 0 or self.bytes_done <= 0 or self.elapsed_s <= 0:
            return None
        rate = self.bytes_done / self.elapsed_s
        return max(0.0, (self.bytes_total - self.bytes_done) / rate)

    def as_event(self) -> dict:
        """The ``events.jsonl`` form: a flat JSON object of ``type`` ``data_progress``."""
        event = {"type": "data_progress", **asdict(self)}
        event["mb_per_s"] = round(self.mb_per_s, 3)
        event["eta_s"] = None if self.eta_s is None else round(self.eta_s, 1)
        return event


ProgressCallback = Callable[[DataProgress], None]


def ignore_progress(_: DataProgress) -> None:
    """The default callback: preparation without anyone watching."""


@dataclass
class StageTimer:
    """Builds :class:`DataProgress` snapshots for one stage and rate-limits them.

    Reporting every batch would flood an events file; ``report`` forwards at most one snapshot per
    ``interval_s`` unless ``force`` is set (first and last of a stage always go through).
    """

    stage: str
    callback: ProgressCallback
    bytes_total: int = 0
    interval_s: float = 0.25
    started: float = field(default_factory=time.perf_counter)
    _last: float = 0.0

    def report(
        self,
        *,
        documents: int = 0,
        tokens: int = 0,
        bytes_done: int = 0,
        message: str = "",
        force: bool = False,
    ) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        self.callback(
            DataProgress(
                stage=self.stage,
                message=message,
                documents=documents,
                tokens=tokens,
                bytes_done=bytes_done,
                bytes_total=self.bytes_total,
                elapsed_s=now - self.started,
            )
        )
