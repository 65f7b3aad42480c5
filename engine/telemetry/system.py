"""Host snapshots through psutil, and the low-disk warning. Torch-free.

:class:`SystemSampler` returns the fields of :class:`engine.runs.events.System`; :class:`DiskWatch`
decides when free space on the run directory's file system is low enough to warn, before a
checkpoint (written to a temporary name next to the previous one, then renamed) would fail.

The threshold is :data:`DISK_WARN_BYTES` (2 GiB) or twice the largest checkpoint already in the
run's ``checkpoints/``, whichever is larger: a checkpoint needs room for one more copy of itself,
and ``best`` and ``last`` may be written back to back. A caller may fix it instead.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

#: Warn when free space where the run writes falls below this many bytes (or twice the largest
#: checkpoint, if larger).
DISK_WARN_BYTES = 2 * 2**30

#: Shortest CPU measurement window worth reporting, in seconds.
MIN_CPU_WINDOW_S = 0.1


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _entry_size(entry: os.DirEntry) -> int:
    """A file's size, or the total of the files under a folder (a Hub-style checkpoint folder)."""
    try:
        if entry.is_file(follow_symlinks=False):
            return entry.stat(follow_symlinks=False).st_size
        if entry.is_dir(follow_symlinks=False):
            return sum(p.stat().st_size for p in Path(entry.path).rglob("*") if p.is_file())
    except OSError:
        pass
    return 0


def largest_checkpoint(checkpoints: Path) -> int:
    """Bytes of the largest entry in ``checkpoints`` (0 if there is none)."""
    try:
        with os.scandir(checkpoints) as it:
            return max((_entry_size(e) for e in it), default=0)
    except OSError:
        return 0


class SystemSampler:
    """CPU, RAM, this process's RSS and CPU, free disk at ``disk_path``; one dict per :meth:`sample`.

    CPU percentages are measured between two calls (psutil keeps the previous reading per
    thread), so the first sample after construction covers the time since construction.
    ``cuda_peak`` is an optional callable returning the CUDA allocator's peak bytes; it is called
    on the sampler's thread, so give it the device explicitly
    (``lambda: torch.cuda.max_memory_allocated(device)``): CUDA's current device is per thread.
    """

    def __init__(
        self,
        disk_path: str | Path | None = None,
        *,
        pid: int | None = None,
        cuda_peak: Callable[[], int | None] | None = None,
    ) -> None:
        self.disk_path = Path(disk_path) if disk_path is not None else Path.cwd()
        self._proc = psutil.Process(pid)
        self._cuda_peak = cuda_peak
        self._cuda_peak_failed = False
        psutil.cpu_percent(None)  # start the measurement windows now
        self._proc.cpu_percent(None)
        self._window_start = time.monotonic()

    def disk_free(self) -> int | None:
        try:
            return shutil.disk_usage(self.disk_path).free
        except OSError:
            return None

    def sample(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cpu_pct": None,
            "ram_used": None,
            "ram_total": None,
            "rss": None,
            "disk_free": self.disk_free(),
            "proc_cpu_pct": None,
            "cuda_peak": None,
        }
        # A window of a few ms reads 0 or 100: leave the CPU figures out of such a sample.
        measured = time.monotonic() - self._window_start >= MIN_CPU_WINDOW_S
        try:
            if measured:
                out["cpu_pct"] = float(psutil.cpu_percent(None))
            vm = psutil.virtual_memory()
            out["ram_total"] = int(vm.total)
            out["ram_used"] = int(vm.total - vm.available)
        except (OSError, psutil.Error):
            pass
        try:
            with self._proc.oneshot():
                out["rss"] = int(self._proc.memory_info().rss)
                if measured:
                    out["proc_cpu_pct"] = float(self._proc.cpu_percent(None))
        except (OSError, psutil.Error):
            pass
        if measured:
            self._window_start = time.monotonic()
        if self._cuda_peak is not None and not self._cuda_peak_failed:
            try:
                peak = self._cuda_peak()
                out["cuda_peak"] = int(peak) if peak is not None else None
            except Exception:
                self._cuda_peak_failed = True  # once broken, do not call it every interval
        return out


class DiskWatch:
    """Says when free space crosses below the threshold; quiet until it recovers (by 10%) and falls
    again, so a run that sits near the limit does not fill its own log."""

    def __init__(self, run_path: str | Path | None, threshold: int | None = None) -> None:
        self.run_path = Path(run_path) if run_path is not None else None
        self.fixed = threshold
        self._low = False

    def threshold(self) -> int:
        if self.fixed is not None:
            return int(self.fixed)
        biggest = largest_checkpoint(self.run_path / "checkpoints") if self.run_path is not None else 0
        return max(DISK_WARN_BYTES, 2 * biggest)

    def check(self, free: int | None) -> str | None:
        """The warning to give now, or None."""
        if free is None:
            return None
        limit = self.threshold()
        if free < limit:
            if self._low:
                return None
            self._low = True
            where = self.run_path if self.run_path is not None else "the working directory"
            return (
                f"low disk space: {_gib(free)} free where the run writes ({where}), below the "
                f"{_gib(limit)} threshold; the next checkpoint may fail. Free some space or move "
                f"the run store (CANVAS_HOME)."
            )
        if free > limit * 1.1:
            self._low = False
        return None
