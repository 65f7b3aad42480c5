"""What telemetry this machine can give, and why not, answered fast for ``canvas info``. Torch-free.

No CodeCarbon tracker is started and CodeCarbon is not imported: its version comes from package
metadata and the way it will measure CPU power from the same files it probes (Intel RAPL in
``/sys/class/powercap``, Apple's ``powermetrics``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
from glob import glob
from typing import Any

from engine.telemetry.carbon import DEFAULT_COUNTRY, TREE_KG_CO2_PER_MONTH
from engine.telemetry.gpus import GpuInfo, list_gpus


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_power_source() -> str:
    """How CodeCarbon will get CPU power here: measured (RAPL, powermetrics) or estimated."""
    system = platform.system()
    if system == "Linux":
        counters = glob("/sys/class/powercap/intel-rapl*/energy_uj") + glob(
            "/sys/class/powercap/intel-rapl/intel-rapl:*/energy_uj"
        )
        if any(os.access(p, os.R_OK) for p in counters):
            return "measured (Intel RAPL energy counters)"
        if counters:
            return (
                "estimated from CPU load: the RAPL counters in /sys/class/powercap are not readable "
                "(make energy_uj readable to measure)"
            )
        return "estimated from CPU load (no RAPL counters here)"
    if system == "Darwin":
        if shutil.which("powermetrics"):
            return "measured with powermetrics if it may run without a password, else estimated from CPU load"
        return "estimated from CPU load"
    return "estimated from CPU load (or Intel Power Gadget / Windows EMI where installed)"


def availability(gpus: tuple[list[GpuInfo], str | None] | None = None) -> dict[str, Any]:
    """GPU, system and emissions telemetry: ``available`` and a one-line ``summary`` each, plus
    details. ``gpus`` is :func:`engine.telemetry.gpus.list_gpus`'s answer if the caller has it."""
    devices, reason = gpus if gpus is not None else list_gpus()
    nvml = _version("nvidia-ml-py")
    if devices:
        gpu_summary = f"NVML (nvidia-ml-py {nvml}): {len(devices)} GPU(s)"
        if reason:
            gpu_summary += f"; note: {reason}"
    else:
        gpu_summary = f"unavailable: {reason}"
    psutil_v = _version("psutil")
    carbon_v = _version("codecarbon")
    cpu_power = cpu_power_source()
    gpu_power = "NVML" if devices else "none (no GPU)"
    if carbon_v:
        carbon_summary = (
            f"CodeCarbon {carbon_v}, offline (no network call), default country "
            f"{DEFAULT_COUNTRY}; CPU power {cpu_power}"
        )
    else:
        carbon_summary = "unavailable: CodeCarbon is not installed (pip install codecarbon)"
    return {
        "gpu": {
            "available": bool(devices),
            "source": f"NVML (nvidia-ml-py {nvml})" if nvml else None,
            "devices": len(devices),
            "reason": reason,
            "summary": gpu_summary,
        },
        "system": {
            "available": psutil_v is not None,
            "source": f"psutil {psutil_v}" if psutil_v else None,
            "reason": None if psutil_v else "psutil is not installed",
            "summary": f"psutil {psutil_v}" if psutil_v else "unavailable: psutil is not installed",
        },
        "emissions": {
            "available": carbon_v is not None,
            "source": f"CodeCarbon {carbon_v}" if carbon_v else None,
            "mode": "offline (OfflineEmissionsTracker)",
            "country_default": DEFAULT_COUNTRY,
            "cpu_power": cpu_power,
            "gpu_power": gpu_power,
            "trees_kg_co2_per_month": round(TREE_KG_CO2_PER_MONTH, 4),
            "reason": None if carbon_v else "CodeCarbon is not installed",
            "summary": carbon_summary,
        },
    }
