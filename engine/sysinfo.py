"""What this machine offers for training, answered without importing torch.

``canvas info`` must answer in well under a second, and importing torch alone costs 1.6 s, so
versions come from package metadata and the torch build (CPU / CUDA / ROCm) from the small
``torch/version.py`` file read as text. ``probe_torch()`` is the slow, exact variant.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
from pathlib import Path
from typing import Any

LIBRARIES = (
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "peft",
    "bitsandbytes",
    "codecarbon",
    "textual",
    "nvidia-ml-py",
    "psutil",
    "safetensors",
)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def torch_build() -> dict[str, Any]:
    """The installed torch's version and the accelerator it was built for, without importing it."""
    version = package_version("torch")
    if version is None:
        return {"installed": False, "summary": "torch is not installed (run: bash .ci/setup)"}
    info: dict[str, Any] = {"installed": True, "version": version, "cuda": None, "hip": None}
    pkg = _package_dir("torch")
    text = (pkg / "version.py").read_text() if pkg and (pkg / "version.py").is_file() else ""
    for key in ("cuda", "hip"):
        m = re.search(rf"^{key}(?::[^=]*)?=\s*'([^']+)'", text, re.MULTILINE)
        info[key] = m.group(1) if m else None
    if info["cuda"]:
        info["summary"] = f"torch {version}, built for CUDA {info['cuda']}"
    elif info["hip"]:
        info["summary"] = f"torch {version}, built for ROCm {info['hip']}"
    else:
        info["summary"] = f"torch {version}, CPU-only build"
    return info


def mps_possible() -> bool:
    """Apple-silicon Metal is only possible on macOS arm64; torch confirms at run time."""
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def cpu_info() -> dict[str, Any]:
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        model = m.group(1).strip() if m else model
        fm = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        flags = set(fm.group(1).split()) if fm else set()
    except OSError:
        pass
    bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    return {
        "model": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "bf16": bf16,
        "amx": "amx_tile" in flags,
        "precision": "bf16 autocast (AVX512-BF16/AMX)" if bf16 else "fp32 (no bf16 instructions)",
    }


def bitsandbytes_status() -> str:
    version = package_version("bitsandbytes")
    if version is None:
        return "not installed: QLoRA 4-bit/8-bit quantisation unavailable (pip install bitsandbytes)"
    pkg = _package_dir("bitsandbytes")
    libs = sorted(p.name for p in pkg.glob("libbitsandbytes_*")) if pkg else []
    backends = sorted({re.sub(r"libbitsandbytes_([a-z]+).*", r"\1", n) for n in libs})
    return f"{version}, native backends: {', '.join(backends) or 'none found'}"


def codecarbon_status() -> str:
    version = package_version("codecarbon")
    if version is None:
        return "not installed: no energy or emissions figures (pip install codecarbon)"
    return f"{version}, offline mode (OfflineEmissionsTracker: no network call)"


def probe_torch() -> dict[str, Any]:
    """Import torch and ask it directly (slow: ~2 s). Used by ``canvas info --probe``."""
    import torch

    out: dict[str, Any] = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [],
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "threads": torch.get_num_threads(),
    }
    if out["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["cuda_devices"].append(
                {
                    "name": p.name,
                    "memory_gib": round(p.total_memory / 2**30, 1),
                    "capability": f"{p.major}.{p.minor}",
                    "bf16": torch.cuda.is_bf16_supported(),
                }
            )
    return out
