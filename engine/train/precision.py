"""Choosing the numeric precision from what the hardware supports, and saying why."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from engine.config.errors import ConfigError
from engine.sysinfo import cpu_info


@dataclass(frozen=True)
class Precision:
    name: str  # bf16 | fp16 | fp32
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self) -> AbstractContextManager:
        """Autocast to the low-precision dtype; weights, gradients and optimizer stay fp32."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only (its exponent range underflows small gradients)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def choose_precision(requested: str, device: torch.device) -> Precision:
    kind = device.type
    if kind == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        if requested == "auto":
            return (
                Precision("bf16", kind, f"{name} supports bf16")
                if bf16
                else Precision("fp16", kind, f"{name} has no bf16: fp16 with a gradient scaler")
            )
        if requested == "bf16" and not bf16:
            raise ConfigError(
                "precision",
                f"precision = bf16, but {name} does not support bfloat16. "
                "Fix: use precision=fp16 (with loss scaling) or auto.",
            )
        return Precision(requested, kind, "requested")
    if kind == "cpu":
        info = cpu_info()
        if requested == "auto":
            if info["bf16"]:
                return Precision("bf16", kind, "the CPU has AVX512-BF16/AMX: bf16 autocast")
            return Precision("fp32", kind, "the CPU has no bf16 instructions: fp32")
        if requested == "fp16":
            raise ConfigError(
                "precision",
                "precision = fp16 is for GPUs; on a CPU it is slower than "
                "fp32 and needs loss scaling. Fix: use precision=bf16 or fp32 (or auto).",
            )
        return Precision(requested, kind, "requested")
    if requested == "auto":
        return Precision("fp32", kind, f"{kind}: fp32")
    return Precision(requested, kind, "requested")


def enable_fast_matmul() -> None:
    """TF32 tensor cores for fp32 matmuls on Ampere and later (10-bit mantissa, fp32 range)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
