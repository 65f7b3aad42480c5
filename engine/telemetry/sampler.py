"""The telemetry of a run: GPU, system and emissions samples written as events from a background thread.

The entry point for every engine loop (pre-training, fine-tuning, evaluation)::

    with run_context(run_dir) as session:
        ...  # build the model, data, optimiser
        peak = (lambda: torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
        with TelemetrySampler(session, interval=cfg.telemetry_interval, country=cfg.carbon_country,
                              output_dir=session.run.path, cuda_peak=peak):
            for step in ...:
                ...

Every ``interval`` seconds the sampler's daemon thread writes one ``gpu`` event per GPU and one
``system`` event; ``carbon`` events (running kWh, kg CO2eq, tree-months) come at the same
cadence from CodeCarbon's measurements. Nothing here touches the training loop's thread except
:meth:`TelemetrySampler.start` and :meth:`TelemetrySampler.stop`, and nothing imports torch: the
CUDA allocator's peak comes from the ``cuda_peak`` callable the loop passes in. Give it the device
explicitly, as above: it runs on the sampler's thread, where CUDA's current device is device 0.

Degrading instead of failing: without NVML or a GPU there is one ``gpu`` event with ``index=-1``
and ``reason`` ("no NVIDIA driver: …", "no GPU visible: …") and no other; when CodeCarbon cannot
start there is one ``log`` warning and the rest goes on; when free disk where the run writes falls
below the threshold (see :mod:`engine.telemetry.system`) there is a ``log`` warning, in
``engine.log`` too. :meth:`~TelemetrySampler.stop` takes a last sample (so a run shorter than one
interval still gets its figures), stops CodeCarbon (which writes ``emissions.csv``) and joins the
thread, normally within a few milliseconds, at most ``interval`` plus CodeCarbon's start-up.

Events go through ``session.emit``; :class:`engine.runs.session.EventWriter` serialises writers
with a lock, so the sampler's thread, CodeCarbon's timer thread and the loop may emit at once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.telemetry.carbon import DEFAULT_COUNTRY, CarbonReading, CarbonTracker, CarbonUnavailable
from engine.telemetry.nvml_sampler import NvmlSampler
from engine.telemetry.system import DiskWatch, SystemSampler

#: Name of the sampler's thread (what ``threading.enumerate()`` shows).
THREAD_NAME = "canvas-telemetry"

#: Seconds between rewrites of this process's row in ``emissions.csv`` while the run goes on.
CSV_EVERY_S = 60.0

#: Extra seconds :meth:`TelemetrySampler.stop` waits beyond one interval (CodeCarbon's ~1.5 s
#: start-up may still be running when a very short run ends).
STOP_GRACE_S = 10.0


class TelemetrySampler:
    """Samples GPU (NVML), system (psutil) and emissions (CodeCarbon) into ``session``'s events.

    ``session`` needs ``emit(type, **fields)``; ``log(message, level)`` and ``run.path`` are used
    when present. ``output_dir`` (default: the session's run directory) receives CodeCarbon's
    ``emissions.csv``; ``disk_path`` (default: ``output_dir``) is where free space is watched, and
    ``disk_warn_bytes`` fixes the warning threshold (default: 2 GiB or twice the largest
    checkpoint). ``nvml`` replaces ``pynvml`` (tests); ``gpu``, ``system`` and ``carbon`` switch
    the three parts.
    """

    def __init__(
        self,
        session: Any,
        *,
        interval: float = 5.0,
        country: str = DEFAULT_COUNTRY,
        output_dir: str | Path | None = None,
        nvml: Any = None,
        cuda_peak: Callable[[], int | None] | None = None,
        gpu: bool = True,
        system: bool = True,
        carbon: bool = True,
        disk_path: str | Path | None = None,
        disk_warn_bytes: int | None = None,
        pid: int | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"telemetry interval must be positive, not {interval!r}")
        self.session = session
        self.interval = float(interval)
        self.country = country or DEFAULT_COUNTRY
        run_path = getattr(getattr(session, "run", None), "path", None)
        if output_dir is None and run_path is not None:
            output_dir = run_path
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.disk_path = Path(disk_path) if disk_path is not None else self.output_dir
        self.pid = os.getpid() if pid is None else pid
        self.gpu, self.system, self.carbon = gpu, system, carbon
        self._nvml_module = nvml
        self._cuda_peak = cuda_peak
        self._disk = DiskWatch(run_path or self.disk_path, disk_warn_bytes)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: NvmlSampler | None = None
        self._sys: SystemSampler | None = None
        self._tracker: CarbonTracker | None = None
        #: Why there are no GPU samples (None while there are, or before the first sample).
        self.gpu_reason: str | None = None
        #: Why there are no emission figures (None while there are).
        self.carbon_reason: str | None = None
        self.dropped = 0  # events that could not be written (disk full, writer closed)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> TelemetrySampler:
        """Start the background thread (returns at once; the first samples follow within ms)."""
        if self._thread is not None:
            raise RuntimeError("the telemetry sampler was already started")
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Take a last sample, stop CodeCarbon and join the thread. True when the thread ended
        within ``timeout`` (default: one interval plus :data:`STOP_GRACE_S`)."""
        self._stopping.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(self.interval + STOP_GRACE_S if timeout is None else timeout)
        if thread.is_alive():
            print(
                "[warning] telemetry thread still busy after stop; left as a daemon",
                file=sys.stderr,
                flush=True,
            )
            return False
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        next_flush = time.monotonic() + CSV_EVERY_S
        try:
            self._open_fast()
            self._tick()
            if self.carbon:
                self._open_carbon()
            while not self._stopping.wait(self.interval):
                self._tick()
                if self._tracker is not None and time.monotonic() >= next_flush:
                    self._tracker.flush()
                    next_flush = time.monotonic() + CSV_EVERY_S
            self._tick()  # the last sample, at stop
        except Exception as exc:  # telemetry must never take the run down
            self._warn(f"telemetry stopped early: {type(exc).__name__}: {exc}")
        finally:
            self._close()

    def _open_fast(self) -> None:
        if self.gpu:
            self._nvml = NvmlSampler(self._nvml_module, pid=self.pid)
            reason = self._nvml.open()
            if reason is not None:
                self._nvml = None
                self.gpu_reason = reason
                self._emit("gpu", index=-1, reason=reason)
                print(f"[info] GPU telemetry off: {reason}", file=sys.stderr, flush=True)
        if self.system or self._cuda_peak is not None:
            self._sys = SystemSampler(self.disk_path, pid=self.pid, cuda_peak=self._cuda_peak)

    def _open_carbon(self) -> None:
        tracker = CarbonTracker(
            country=self.country,
            interval=self.interval,
            output_dir=self.output_dir,
            on_reading=self._on_carbon,
        )
        try:
            for warning in tracker.start():
                self._warn(warning)
        except CarbonUnavailable as exc:
            self.carbon_reason = str(exc)
            self._warn(f"emissions are not measured for this run: {exc}")
            return
        except Exception as exc:
            self.carbon_reason = f"{type(exc).__name__}: {exc}"
            self._warn(f"emissions are not measured for this run: CodeCarbon failed: {self.carbon_reason}")
            return
        self._tracker = tracker

    def _tick(self) -> None:
        if self._nvml is not None:
            for fields in self._nvml.sample():
                self._emit("gpu", **fields)
        if self._sys is not None:
            fields = self._sys.sample()
            if self.system:
                self._emit("system", **fields)
                warning = self._disk.check(fields["disk_free"])
                if warning:
                    self._warn(warning)
            elif fields["cuda_peak"] is not None:
                self._emit("system", cuda_peak=fields["cuda_peak"])

    def _on_carbon(self, reading: CarbonReading) -> None:
        self._emit("carbon", **reading.as_event())

    def _close(self) -> None:
        if self._tracker is not None:
            tracker, self._tracker = self._tracker, None
            tracker.stop()  # the final totals arrive through _on_carbon
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    # -- writing ------------------------------------------------------------------------------
    def _emit(self, kind: str, **fields: Any) -> None:
        try:
            self.session.emit(kind, **fields)
        except (OSError, ValueError):  # disk full, or the run's writer already closed
            self.dropped += 1

    def _warn(self, message: str) -> None:
        log = getattr(self.session, "log", None)
        try:
            if callable(log):
                log(message, "warning")
            else:
                self.session.emit("log", message=message, level="warning")
        except (OSError, ValueError):
            self.dropped += 1
