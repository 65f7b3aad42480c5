"""GPU snapshots through NVML, one dict of :class:`engine.runs.events.Gpu` fields per device. Torch-free.

Follows nvitop's approach: every field is read on its own and a field NVML cannot give on this
GPU (``NVMLError_NotSupported`` on a laptop GPU's fan, no permission for the power limit, a
``usedGpuMemory`` the driver hides) is None, never an exception, so one missing sensor never
costs the whole sample. The NVML module is a parameter: production passes nothing and gets
``pynvml`` (``nvidia-ml-py``); tests hand in a stand-in with the same function names.

    sampler = NvmlSampler()
    reason = sampler.open()          # None, or why there is nothing to sample
    if reason is None:
        for fields in sampler.sample():
            session.emit("gpu", **fields)
    sampler.close()

Which GPUs: those ``CUDA_VISIBLE_DEVICES`` lets this process use (by index or ``GPU-…`` UUID
prefix), or all when it is unset. ``index`` in the samples is NVML's index, the number
``nvidia-smi`` shows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from engine.telemetry.gpus import (
    NO_NVML_PACKAGE,
    _text,
    hidden_by_cuda_visible_devices,
    load_nvml,
    nvml_reason,
)

#: NVML's "value not available" markers (unsigned -1 in 32 and 64 bits).
_NOT_AVAILABLE = (2**32 - 1, 2**64 - 1)

#: The reason when NVML loads but lists no device.
NO_GPU_VISIBLE = "no GPU visible: the NVIDIA driver is loaded but reports no GPU"


def _na(read: Callable[[], Any]) -> Any:
    """The value ``read`` returns, or None when NVML raises or answers "not available"."""
    try:
        value = read()
    except Exception:
        return None
    if isinstance(value, int) and value in _NOT_AVAILABLE:
        return None
    return value


def _visible_filter(value: str | None) -> tuple[set[int], tuple[str, ...]] | None:
    """``CUDA_VISIBLE_DEVICES`` as NVML indices and UUID prefixes; None means every GPU."""
    if value is None or not value.strip():
        return None
    indices: set[int] = set()
    uuids: list[str] = []
    for item in value.split(","):
        item = item.strip()
        if item.isdigit():
            indices.add(int(item))
        elif item.startswith(("GPU-", "MIG-")):
            uuids.append(item)
        elif item:
            return None  # a form we do not understand: sample every GPU rather than none
    return indices, tuple(uuids)


class NvmlSampler:
    """Snapshots of the GPUs this process may use; see the module docstring."""

    def __init__(self, nvml: Any = None, *, pid: int | None = None) -> None:
        self._nvml = nvml
        self.pid = os.getpid() if pid is None else pid
        self._devices: list[tuple[int, Any, str | None]] = []  # (NVML index, handle, name)
        self._initialised = False

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def open(self) -> str | None:
        """Initialise NVML and pick the devices; None on success, else the reason there is nothing
        to sample ("no NVIDIA driver: …", "no GPU visible: …")."""
        nvml = self._nvml if self._nvml is not None else load_nvml()
        if nvml is None:
            return NO_NVML_PACKAGE
        self._nvml = nvml
        hidden = hidden_by_cuda_visible_devices()
        if hidden:
            return f"no GPU visible: {hidden}"
        try:
            nvml.nvmlInit()
        except Exception as exc:
            return nvml_reason(nvml, exc)
        self._initialised = True
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            self.close()
            return nvml_reason(nvml, exc)
        wanted = _visible_filter(os.environ.get("CUDA_VISIBLE_DEVICES"))
        for index in range(count):
            handle = _na(lambda i=index: nvml.nvmlDeviceGetHandleByIndex(i))
            if handle is None:
                continue
            if wanted is not None:
                uuid = _na(lambda h=handle: _text(nvml.nvmlDeviceGetUUID(h))) or ""
                if index not in wanted[0] and not any(uuid.startswith(u) for u in wanted[1]):
                    continue
            name = _na(lambda h=handle: _text(nvml.nvmlDeviceGetName(h)))
            self._devices.append((index, handle, name))
        if not self._devices:
            self.close()
            return (
                NO_GPU_VISIBLE
                if count == 0
                else f"no GPU visible: none of NVML's {count} GPU(s) "
                f"is in CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}"
            )
        return None

    def sample(self) -> list[dict[str, Any]]:
        """One dict of ``gpu`` event fields per device; unreadable fields are None."""
        return [self._snapshot(index, handle, name) for index, handle, name in self._devices]

    def _snapshot(self, index: int, handle: Any, name: str | None) -> dict[str, Any]:
        nvml = self._nvml
        util = _na(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        mem = _na(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power = _na(lambda: nvml.nvmlDeviceGetPowerUsage(handle))  # milliwatts
        limit = _na(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        if limit is None:
            limit = _na(lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle))
        return {
            "index": index,
            "name": name,
            "util": _na(lambda: float(util.gpu)) if util is not None else None,
            "mem_used": _na(lambda: int(mem.used)) if mem is not None else None,
            "mem_total": _na(lambda: int(mem.total)) if mem is not None else None,
            "temp": _na(
                lambda: float(nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)))
            ),
            "power": power / 1000.0 if isinstance(power, (int, float)) else None,
            "power_limit": limit / 1000.0 if isinstance(limit, (int, float)) else None,
            "sm_clock": _na(
                lambda: float(nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_SM", 1)))
            ),
            "proc_mem": self._process_memory(handle),
            "fan": _na(lambda: float(nvml.nvmlDeviceGetFanSpeed(handle))),
            "pstate": _na(lambda: int(nvml.nvmlDeviceGetPerformanceState(handle))),
        }

    def _process_memory(self, handle: Any) -> int | None:
        """Bytes our process holds on this GPU: 0 when NVML lists no process with our pid (inside a
        container with its own pid namespace NVML reports host pids, so this reads 0 there too);
        None when NVML cannot tell."""
        procs = _na(lambda: self._nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        if procs is None:
            return None
        total, known = 0, True
        for proc in procs:
            if getattr(proc, "pid", None) != self.pid:
                continue
            used = getattr(proc, "usedGpuMemory", None)
            if not isinstance(used, int) or used in _NOT_AVAILABLE:
                known = False
                continue
            total += used
        return total if known else None

    def close(self) -> None:
        """Shut NVML down (safe to call twice, or after a failed :meth:`open`)."""
        self._devices = []
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
