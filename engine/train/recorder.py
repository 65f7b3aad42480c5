"""What a run tells the outside world: events in the run directory (rank 0), TensorBoard scalars,
engine.log lines, and an optional in-process observer (the demo prints from it)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from engine.config.loop import LoopConfig
from engine.runs.events import Event, Log, decode_any
from engine.runs.session import EngineSession

#: Called with each event as the run emits it (rank 0 only), decoded as every reader of the run
#: directory sees it (:func:`engine.runs.events.decode_any`): attributes, never string keys.
Observer = Callable[[Event], None]


class RunRecorder:
    """Events and scalars of one process; silent where there is no session (the other ranks)."""

    def __init__(self, session: EngineSession | None, observer: Observer | None = None) -> None:
        self.session = session
        self.observer = observer
        self.tb: Any = None

    def emit(self, event_type: str, /, **fields: Any) -> None:
        if self.session is not None:
            self.session.emit(event_type, **fields)
        if self.observer is not None:
            self.observer(decode_any({"type": event_type, **fields}))

    def log(self, message: str, level: str = "info") -> None:
        if self.session is not None:
            self.session.log(message, level=level)  # also echoed to engine.log
        if self.observer is not None:
            self.observer(Log(message=message, level=level))

    def update_meta(self, **fields: Any) -> None:
        if self.session is not None:
            self.session.run.update_meta(**fields)

    def open_tensorboard(self, run_dir: Path, step: int) -> None:
        """Scalars under ``<run>/tb``; on resume, points after ``step`` written by the attempt
        that died are purged so the curves do not fold back."""
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=step + 1 if step else None)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def telemetry(
    cfg: LoopConfig, session: EngineSession | None, run_dir: Path, device: torch.device
) -> AbstractContextManager:
    """GPU, system and emissions sampling on a background thread, rank 0 only, for the whole run
    (data preparation and model loading included: they burn energy too)."""
    if session is None:
        return nullcontext()
    from engine.telemetry import TelemetrySampler

    peak = (lambda: torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return TelemetrySampler(
        session,
        interval=cfg.telemetry_interval,
        country=cfg.carbon_country,
        output_dir=run_dir,
        cuda_peak=peak,
    )
