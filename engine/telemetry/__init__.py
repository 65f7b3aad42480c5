"""GPU, system and emissions telemetry. Modules here import their hardware libraries lazily.

- :class:`TelemetrySampler` (``sampler.py``): the background thread every engine loop runs its
  steps inside; writes ``gpu``, ``system`` and ``carbon`` events.
- ``nvml_sampler.py`` (GPU snapshots through NVML), ``system.py`` (psutil, low-disk warning),
  ``carbon.py`` (CodeCarbon offline, trees constant), ``gpus.py`` (the GPU listing of ``canvas info``).
- :func:`availability`: what this machine can measure and why not, for ``canvas info``.

Nothing here imports torch; CodeCarbon and NVML are imported only when a sampler starts.
"""

from engine.telemetry.availability import availability
from engine.telemetry.sampler import TelemetrySampler

__all__ = ["TelemetrySampler", "availability"]
