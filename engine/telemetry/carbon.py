"""Energy (kWh) and emissions (kg CO2eq) through CodeCarbon in offline mode, as running totals.

CodeCarbon's ``OfflineEmissionsTracker`` makes no network call: the grid's carbon intensity comes
from its bundled energy-mix table for ``country`` (ISO 3166 alpha-3, default
:data:`DEFAULT_COUNTRY`). The online tracker would try a geo-IP look-up and, offline, fall back to
Canada, whose hydro-heavy grid under-reports about 60x against Great Britain's.

How the totals stream: CodeCarbon measures power every ``interval`` seconds on its own timer
thread; with ``api_call_interval=1`` it hands every measurement to its output handlers'
``live_out(total, delta)``. :class:`CarbonTracker` registers one such handler (a ``BaseOutput``
subclass) and passes each new total to ``on_reading``: totals only ever grow, a reading that would
not is dropped. CodeCarbon's own ``emissions.csv`` is written into ``output_dir`` (the run
directory) by :meth:`CarbonTracker.flush` and at :meth:`CarbonTracker.stop`, one row per engine
process (``on_csv_write="update"`` rewrites this process's row instead of appending one per flush).
A resumed run starts a new process: the rows earlier attempts left in ``emissions.csv`` are added
to the totals, so the figures cover the whole run.

Without RAPL energy counters (most VMs and containers) CodeCarbon estimates CPU power from the
CPU load and the RAM's from its size; GPUs are read through NVML. Failures never stop a run:
:meth:`CarbonTracker.start` raises :class:`CarbonUnavailable` with a message the sampler turns into
one warning event. Importing this module does not import CodeCarbon.

Trees: :func:`tree_months` converts kg CO2eq into the months one mature tree needs to absorb them,
at :data:`TREE_KG_CO2_PER_MONTH` = 11 kg a year / 12, the figure of the Green Algorithms calculator:
Lannelongue, Grealey and Inouye, "Green Algorithms: Quantifying the Carbon Footprint of
Computation", Advanced Science 8 (2021) 2100707, https://doi.org/10.1002/advs.202100707 (their
worked example: 1.50 kg CO2eq is 1.64 tree-months).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Grid whose carbon intensity is used when the run config names none (TrainConfig's default too).
DEFAULT_COUNTRY = "GBR"

#: kg CO2 one mature tree absorbs in a month: 11 kg a year (Green Algorithms, Lannelongue et al.
#: 2021, doi:10.1002/advs.202100707) divided by 12.
TREE_KG_CO2_PER_MONTH = 11.0 / 12.0

#: CodeCarbon's file name, kept as it names it.
EMISSIONS_CSV = "emissions.csv"


def tree_months(emissions_kg: float) -> float:
    """Months one mature tree needs to absorb ``emissions_kg`` of CO2eq."""
    return emissions_kg / TREE_KG_CO2_PER_MONTH


class CarbonUnavailable(RuntimeError):
    """CodeCarbon cannot measure this run; the message says why."""


@dataclass(frozen=True)
class CarbonReading:
    """Running totals: ``energy_kwh``, ``emissions_kg`` (CO2eq), ``power`` the last measured draw
    of CPU + GPU + RAM in watts, ``country`` the grid used."""

    energy_kwh: float
    emissions_kg: float
    power: float | None = None
    country: str | None = None

    @property
    def trees(self) -> float:
        return tree_months(self.emissions_kg)

    def as_event(self) -> dict[str, Any]:
        """The fields of a ``carbon`` event."""
        return {
            "energy_kwh": self.energy_kwh,
            "emissions_kg": self.emissions_kg,
            "trees": self.trees,
            "power": self.power,
            "country": self.country,
        }


def previous_totals(csv_path: Path) -> tuple[float, float]:
    """kWh and kg CO2eq recorded in an existing ``emissions.csv`` (earlier attempts of this run)."""
    energy = emissions = 0.0
    try:
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    e, kg = float(row["energy_consumed"]), float(row["emissions"])
                    energy, emissions = energy + e, emissions + kg
    except (OSError, csv.Error):
        pass
    return energy, emissions


def known_country(country: str) -> bool | None:
    """Whether CodeCarbon's bundled energy-mix table has ``country`` (None if it cannot tell)."""
    try:
        from codecarbon.input import DataSource

        return country.upper() in DataSource().get_global_energy_mix_data()
    except Exception:
        return None


def _log_level() -> str:
    return os.environ.get("CODECARBON_LOG_LEVEL", "error").upper()


def _handler(tracker: CarbonTracker) -> Any:
    """A CodeCarbon output handler forwarding every total to ``tracker`` (built lazily: subclassing
    ``BaseOutput`` needs CodeCarbon imported)."""
    from codecarbon.output_methods.base_output import BaseOutput

    class LiveTotals(BaseOutput):
        def live_out(self, total: Any, delta: Any) -> None:  # every measurement
            tracker._on_totals(total)

        def out(self, total: Any, delta: Any) -> None:  # flush() and stop()
            tracker._on_totals(total)

    return LiveTotals()


class CarbonTracker:
    """Wraps ``OfflineEmissionsTracker``; see the module docstring.

    ``on_reading`` is called with each new :class:`CarbonReading`, from CodeCarbon's timer thread
    or from the thread calling :meth:`flush`/:meth:`stop`, one call at a time.
    """

    def __init__(
        self,
        *,
        country: str = DEFAULT_COUNTRY,
        interval: float = 5.0,
        output_dir: str | Path | None = None,
        on_reading: Callable[[CarbonReading], None] | None = None,
        tracking_mode: str = "machine",
        include_previous: bool = True,
    ) -> None:
        self.country = (country or DEFAULT_COUNTRY).upper()
        self.interval = float(interval)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.on_reading = on_reading
        self.tracking_mode = tracking_mode
        self.include_previous = include_previous
        self.latest: CarbonReading | None = None
        self._offset = (0.0, 0.0)
        self._lock = threading.Lock()
        self._seen = False
        self._tracker: Any = None

    @property
    def csv_path(self) -> Path | None:
        return self.output_dir / EMISSIONS_CSV if self.output_dir is not None else None

    def start(self) -> list[str]:
        """Start measuring (about 1.5 s: CodeCarbon probes the hardware). Returns warnings worth
        showing (an unknown country); raises :class:`CarbonUnavailable` when it cannot measure."""
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError as exc:
            raise CarbonUnavailable(f"CodeCarbon is not installed (pip install codecarbon): {exc}") from exc
        warnings: list[str] = []
        if known_country(self.country) is False:
            warnings.append(
                f"CodeCarbon has no energy mix for carbon_country {self.country!r}: emissions "
                f"use its world average. Use an ISO 3166 alpha-3 code such as GBR, USA, FRA."
            )
        if self.output_dir is not None and not self.output_dir.is_dir():
            raise CarbonUnavailable(f"output folder {self.output_dir} does not exist")
        if self.include_previous and self.csv_path is not None:
            self._offset = previous_totals(self.csv_path)
        logging.getLogger("codecarbon").setLevel(_log_level())  # before its constructor logs
        kwargs: dict[str, Any] = {
            "country_iso_code": self.country,
            "measure_power_secs": self.interval,
            "api_call_interval": 1,
            "output_handlers": [_handler(self)],
            "log_level": _log_level(),
            "allow_multiple_runs": True,
            "tracking_mode": self.tracking_mode,
            "project_name": "neural-canvas",
        }
        if self.output_dir is not None:
            kwargs.update(
                output_methods=["csv"],
                output_dir=str(self.output_dir),
                output_file=EMISSIONS_CSV,
                on_csv_write="update",
            )
        else:
            kwargs.update(output_methods=[])
        try:
            tracker = OfflineEmissionsTracker(**kwargs)
            tracker.start()
        except Exception as exc:
            raise CarbonUnavailable(f"CodeCarbon failed to start: {type(exc).__name__}: {exc}") from exc
        # CodeCarbon swallows its own exceptions (logging them); a started tracker has measured
        # once and reported it to our handler before start() returned.
        if not self._seen:
            with contextlib.suppress(Exception):
                tracker.stop()
            raise CarbonUnavailable(
                "CodeCarbon's tracker did not start (run with CODECARBON_LOG_LEVEL="
                "warning to see its reason in engine.log)"
            )
        self._tracker = tracker
        return warnings

    def _on_totals(self, total: Any) -> None:
        try:
            energy = self._offset[0] + float(total.energy_consumed)
            emissions = self._offset[1] + float(total.emissions)
            power = sum(float(getattr(total, k, 0.0) or 0.0) for k in ("cpu_power", "gpu_power", "ram_power"))
        except (TypeError, ValueError, AttributeError):
            return
        with self._lock:
            self._seen = True
            if self.latest is not None and energy <= self.latest.energy_kwh:
                return
            if self.latest is None and energy <= 0:
                return
            self.latest = CarbonReading(energy, emissions, power, self.country)
            if self.on_reading is not None:
                with contextlib.suppress(Exception):  # never raise into CodeCarbon's thread
                    self.on_reading(self.latest)

    def flush(self) -> None:
        """Write this process's row of ``emissions.csv`` now (it survives a ``kill -9`` later)."""
        if self._tracker is not None:
            with contextlib.suppress(Exception):
                self._tracker.flush()

    def stop(self) -> CarbonReading | None:
        """Stop measuring, write ``emissions.csv``, and return the final totals."""
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            with contextlib.suppress(Exception):
                tracker.stop()
        return self.latest
