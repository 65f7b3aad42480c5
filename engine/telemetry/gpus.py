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


def load_nvml() -> ModuleType | None:
    """``pynvml`` (from ``nvidia-ml-py``), or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def nvml_reason(nvml: Any, exc: Exception) -> str:
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


_load_nvml = load_nvml  # the names this module used first
_reason = nvml_reason

#: Why there are no GPUs when ``nvidia-ml-py`` itself is missing.
NO_NVML_PACKAGE = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"


def hidden_by_cuda_visible_devices() -> str | None:
    """The reason training processes see no GPU when ``CUDA_VISIBLE_DEVICES`` hides them all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from training processes"
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def list_gpus(nvml: Any = None) -> tuple[list[GpuInfo], str | None]:
    """The GPUs NVML reports, and ``None``; or ``[]`` and the reason there are none."""
    nvml = nvml if nvml is not None else load_nvml()
    if nvml is None:
        return [], NO_NVML_PACKAGE
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return [], nvml_reason(nvml, exc)
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        count = nvml.nvmlDeviceGetCount()
        gpus = []
        for i in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(i, _text(nvml.nvmlDeviceGetName(handle)), int(mem.total) // 2**20, driver))
    except Exception as exc:
        return [], nvml_reason(nvml, exc)
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    if not gpus:
        return [], "the NVIDIA driver is loaded but reports no GPU"
    return gpus, hidden_by_cuda_visible_devices()
