"""Which NVIDIA GPUs NVML sees, or the precise reason it sees none. Torch-free.

The NVML module is a parameter so that tests can hand in a stand-in with the same functions on
machines without a GPU; in production it is ``pynvml`` from ``nvidia-ml-py``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mib: int
    driver: str


def _load_nvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _reason(nvml: Any, exc: Exception) -> str:
    """Turn an NVML exception into something a user can act on."""
    kinds = {
        "NVMLError_LibraryNotFound": "no NVIDIA driver: the NVML library (libnvidia-ml.so) was not found",
        "NVMLError_DriverNotLoaded": "the NVIDIA driver is installed but not loaded",
        "NVMLError_NoPermission": "no permission to query the NVIDIA driver",
        "NVMLError_Uninitialized": "NVML could not be initialised",
    }
    for name, text in kinds.items():
        cls = getattr(nvml, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return text
    return f"NVML failed: {exc}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def list_gpus(nvml: Any = None) -> tuple[list[GpuInfo], str | None]:
    """The GPUs NVML reports, and ``None``; or ``[]`` and the reason there are none."""
    nvml = nvml if nvml is not None else _load_nvml()
    if nvml is None:
        return [], "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return [], _reason(nvml, exc)
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        count = nvml.nvmlDeviceGetCount()
        gpus = []
        for i in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(i, _text(nvml.nvmlDeviceGetName(handle)), int(mem.total) // 2**20, driver))
    except Exception as exc:
        return [], _reason(nvml, exc)
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    if not gpus:
        return [], "the NVIDIA driver is loaded but reports no GPU"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return gpus, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from training processes"
    return gpus, None
