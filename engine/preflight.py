"""What every run kind's check-and-start shares: the result shape and the hardware checks. Torch-free.

Each run kind has one ``preflight(cfg, ...)`` that checks everything it can without allocating
anything (:mod:`engine.train.preflight`, :mod:`engine.finetune.preflight`), and one ``start(...)``
that preflights, then creates the run directory, then launches the detached engine. The CLI, the
console and the demo call exactly these, so every front end refuses the same bad input with the
same one-paragraph :class:`~engine.config.errors.ConfigError` before a run directory exists.

The hardware questions are answered without importing torch (1.6 s): the torch build is read from
its ``version.py`` (:func:`engine.sysinfo.torch_build`) and the GPUs are counted through NVML.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from engine.config.errors import ConfigError
from engine.runs.meta import RunKind
from engine.runs.store import RunDir

#: The device strings the engine understands (``torch.device`` takes each of them).
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class Checked(Protocol):
    """What every kind's ``preflight`` returns: the config to launch (with anything it resolved
    pinned, e.g. a fine-tune's base), a one-line summary for a person, and warnings that do not
    refuse the run but should be shown before it starts."""

    @property
    def kind(self) -> RunKind: ...

    @property
    def config(self) -> Any: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    def summary(self) -> str: ...


class Started(NamedTuple):
    """What a kind's ``start`` returns: the new run directory (its engine launched) and what was checked."""

    run: RunDir
    checked: Checked


def visible_gpus() -> tuple[int | None, str]:
    """How many NVIDIA GPUs a training process would see, and why (``None``: cannot tell).

    Counted by NVML and narrowed by ``CUDA_VISIBLE_DEVICES``; a CPU-only torch build sees none.
    """
    from engine.sysinfo import torch_build

    build = torch_build()
    if not build.get("installed"):
        return None, build["summary"]
    if not build.get("cuda") and not build.get("hip"):
        return 0, f"this torch build is CPU-only ({build['summary']})"
    from engine.telemetry.gpus import hidden_by_cuda_visible_devices, list_gpus

    hidden = hidden_by_cuda_visible_devices()
    if hidden:
        return 0, hidden
    if build.get("hip"):
        return None, "ROCm GPUs are not counted through NVML"
    gpus, reason = list_gpus()
    if reason and not gpus:
        return 0, reason
    count = len(gpus)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count, f"{count} GPU{'' if count == 1 else 's'} visible"


def cpu_cores() -> int:
    """The cores this process may run on (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_device(device: str, precision_key: str, precision: str) -> None:
    """Refuse a device this machine does not have, or a precision its torch build cannot do."""
    from engine.sysinfo import torch_build

    if not isinstance(device, str) or not DEVICE_RE.fullmatch(device):
        raise ConfigError(
            "device",
            f"device = {device!r} is not a device. Fix: use device=auto (a GPU when there is one), "
            "cpu, cuda, cuda:N or mps.",
        )
    build = torch_build()
    cpu_only = build.get("installed") and not build.get("cuda") and not build.get("hip")
    if cpu_only and device in ("auto", "cpu") and precision == "fp16":
        raise ConfigError(
            precision_key,
            f"{precision_key} = fp16 needs a GPU, and this torch build is "
            f"CPU-only ({build['summary']}). Fix: use {precision_key}=auto (bf16 where the "
            "CPU has it).",
        )
    if cpu_only and device.startswith("cuda"):
        raise ConfigError(
            "device",
            f"device = {device}, but this torch build is CPU-only "
            f"({build['summary']}). Fix: use device=auto or cpu, or install a CUDA build.",
        )
    if device.startswith("cuda"):
        count, why = visible_gpus()
        index = int(device.partition(":")[2] or 0)
        if count is not None and index >= count:
            raise ConfigError(
                "device",
                f"device = {device}, but this machine shows "
                f"{'no GPU' if count == 0 else f'only {count} GPU(s)'} ({why}). Fix: use device=auto "
                f"or cpu{'' if count == 0 else f', or cuda:0 to cuda:{count - 1}'}.",
            )
    if device == "mps":
        from engine.sysinfo import mps_possible

        if not mps_possible():
            raise ConfigError(
                "device",
                "device = mps needs an Apple-silicon Mac, and this is not one. Fix: use device=auto or cpu.",
            )


def check_nproc(nproc: Any, device: str) -> None:
    """Refuse more processes than the devices they would run on: one process per GPU, or (on the
    CPU) one per core; more only makes them wait for each other."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(
            "nproc",
            f"nproc = {nproc!r}: the number of training processes must be a whole number of at least 1. "
            "Fix: use nproc=1 (one process), or one per GPU for distributed training.",
        )
    if nproc == 1:
        return
    if device.startswith("cuda:") or device == "mps":
        raise ConfigError(
            "nproc",
            f"nproc = {nproc} with device = {device}: several processes cannot share one device. "
            "Fix: use device=auto (each process takes a GPU of its own), device=cpu, or nproc=1.",
        )
    gpus = 0 if device == "cpu" else visible_gpus()[0]
    if gpus is None:
        return  # cannot count them here (ROCm, no torch): torchrun reports it
    if gpus:
        if nproc > gpus:
            raise ConfigError(
                "nproc",
                f"nproc = {nproc}, but only {gpus} GPU{'' if gpus == 1 else 's'} "
                f"{'is' if gpus == 1 else 'are'} visible: each process needs a GPU of its own. "
                f"Fix: use nproc={gpus} or fewer.",
            )
        return
    if device == "cuda":
        return  # no GPU: check_device refuses that, with the reason
    cores = cpu_cores()
    if nproc > cores:
        raise ConfigError(
            "nproc",
            f"nproc = {nproc} processes on the CPU, but this machine has {cores} core"
            f"{'' if cores == 1 else 's'} for them and no GPU. Fix: use nproc={cores} or fewer "
            "(nproc=1 trains fastest on one CPU).",
        )


def check_resume(run: RunDir) -> Path:
    """The checkpoint a resume of ``run`` continues from. The engine calls this first, so a run that
    ended before its first checkpoint is refused before any data is prepared or a model is loaded."""
    from engine.train.layout import resolve_checkpoint

    path = resolve_checkpoint(run.checkpoints_dir, "last")
    if path is None:
        raise ConfigError(
            "resume",
            f"cannot resume: {run.checkpoints_dir} holds no checkpoint. Fix: start "
            "a new run (the run stopped before its first checkpoint).",
        )
    return path
