"""Model FLOPs utilisation: achieved training FLOPs over the GPU's dense peak."""

from __future__ import annotations

# Dense (no sparsity) bf16/fp16 tensor-core peaks from the vendors' datasheets, FLOP/s.
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100 SXM", 989e12),
    ("H100 80GB HBM3", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 756e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
)


def peak_flops(device_name: str) -> float | None:
    for key, peak in PEAK_BF16:
        if key.lower() in device_name.lower():
            return peak
    return None


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None, n_gpus: int = 1) -> float | None:
    if not peak:
        return None
    return flops_per_token * tokens_per_s / (peak * n_gpus)
