"""GPU telemetry against a stand-in of the NVML functions (no GPU here): every field, a field NVML
does not support, our process's memory, CUDA_VISIBLE_DEVICES, and the single "why no GPU" event."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from engine.runs import EventReader, create_run, run_context
from engine.telemetry import TelemetrySampler
from engine.telemetry.gpus import list_gpus
from engine.telemetry.nvml_sampler import NO_GPU_VISIBLE, NvmlSampler
from tests.waiting import wait_until

OTHER_PID = 999_999


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # pynvml's names
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


class FakeNvml:
    """The pynvml functions the sampler calls, for two H100-like GPUs. ``unsupported`` names
    functions that raise NVMLError_NotSupported; ``init_error`` makes nvmlInit fail."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound

    def __init__(
        self,
        count: int = 2,
        *,
        pid: int | None = None,
        unsupported: tuple[str, ...] = (),
        init_error: Exception | None = None,
        used_memory: int | None = 3 * 2**30,
    ) -> None:
        self.count, self.pid, self.unsupported = count, pid or os.getpid(), set(unsupported)
        self.init_error, self.used_memory = init_error, used_memory
        self.initialised = self.shut_down = 0
        self.lost = False

    def _check(self, name: str) -> None:
        if name in self.unsupported:
            raise NVMLError_NotSupported("Not Supported")
        if self.lost:
            raise NVMLError_GpuIsLost("GPU is lost")

    def nvmlInit(self):
        if self.init_error is not None:
            raise self.init_error
        self.initialised += 1

    def nvmlShutdown(self):
        self.shut_down += 1

    def nvmlSystemGetDriverVersion(self):
        return b"580.65.06"

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h[1]}abc1234-0000"

    def nvmlDeviceGetUtilizationRates(self, h):
        self._check("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=87 + h[1], memory=40)

    def nvmlDeviceGetMemoryInfo(self, h):
        self._check("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=80 * 2**30, used=(20 + h[1]) * 2**30, free=(60 - h[1]) * 2**30)

    def nvmlDeviceGetTemperature(self, h, sensor):
        self._check("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 61

    def nvmlDeviceGetPowerUsage(self, h):
        self._check("nvmlDeviceGetPowerUsage")
        return 312_456  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        self._check("nvmlDeviceGetEnforcedPowerLimit")
        return 700_000

    def nvmlDeviceGetPowerManagementLimit(self, h):
        self._check("nvmlDeviceGetPowerManagementLimit")
        return 650_000

    def nvmlDeviceGetClockInfo(self, h, clock):
        self._check("nvmlDeviceGetClockInfo")
        assert clock == self.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        self._check("nvmlDeviceGetComputeRunningProcesses")
        ours = [SimpleNamespace(pid=self.pid, usedGpuMemory=self.used_memory)] if h[1] == 0 else []
        return [*ours, SimpleNamespace(pid=OTHER_PID, usedGpuMemory=50 * 2**30)]

    def nvmlDeviceGetFanSpeed(self, h):
        self._check("nvmlDeviceGetFanSpeed")
        return 30

    def nvmlDeviceGetPerformanceState(self, h):
        self._check("nvmlDeviceGetPerformanceState")
        return 0


@pytest.fixture
def run_session():
    run = create_run("pretrain", "telemetry-gpu", {})
    with run_context(run.path, install_signals=False, exit_on_error=False) as session:
        yield session


def events_of(session, kind: str) -> list[dict]:
    return [r for r in EventReader(session.run.events_path).read_new() if r["type"] == kind]


def test_snapshot_reads_every_field_and_the_memory_our_process_holds():
    sampler = NvmlSampler(FakeNvml(unsupported=("nvmlDeviceGetFanSpeed",)))
    assert sampler.open() is None
    assert sampler.device_count == 2
    first, second = sampler.sample()
    assert first == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "util": 87.0,
        "mem_used": 20 * 2**30,
        "mem_total": 80 * 2**30,
        "temp": 61.0,
        "power": 312.456,
        "power_limit": 700.0,
        "sm_clock": 1980.0,
        "proc_mem": 3 * 2**30,
        "fan": None,
        "pstate": 0,
    }
    # another process's 50 GiB is not ours; on GPU 1 we hold nothing
    assert second["index"] == 1 and second["proc_mem"] == 0 and second["util"] == 88.0
    sampler.close()
    sampler.close()  # twice is harmless


def test_a_field_nvml_does_not_support_is_none_and_the_rest_is_read():
    fake = FakeNvml(
        count=1,
        unsupported=(
            "nvmlDeviceGetTemperature",
            "nvmlDeviceGetEnforcedPowerLimit",
            "nvmlDeviceGetComputeRunningProcesses",
        ),
    )
    sampler = NvmlSampler(fake)
    assert sampler.open() is None
    (gpu,) = sampler.sample()
    assert gpu["temp"] is None and gpu["proc_mem"] is None
    assert gpu["power_limit"] == 650.0  # falls back to the management limit
    assert gpu["util"] == 87.0 and gpu["mem_total"] == 80 * 2**30 and gpu["power"] == 312.456


def test_hidden_per_process_memory_reads_none_and_a_lost_gpu_does_not_raise():
    fake = FakeNvml(count=1, used_memory=None)  # the driver hides usedGpuMemory (e.g. no permission)
    sampler = NvmlSampler(fake)
    assert sampler.open() is None
    assert sampler.sample()[0]["proc_mem"] is None
    fake.lost = True
    (gpu,) = sampler.sample()
    assert gpu["index"] == 0 and gpu["util"] is None and gpu["mem_used"] is None and gpu["power"] is None


def test_cuda_visible_devices_selects_the_gpus_sampled(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    sampler = NvmlSampler(FakeNvml())
    assert sampler.open() is None
    assert [g["index"] for g in sampler.sample()] == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0abc")
    sampler = NvmlSampler(FakeNvml())
    assert sampler.open() is None
    assert [g["index"] for g in sampler.sample()] == [0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    fake = FakeNvml()
    assert "hides every GPU" in NvmlSampler(fake).open()
    assert fake.initialised == 0


def test_the_reasons_there_is_nothing_to_sample():
    assert NvmlSampler(FakeNvml(count=0)).open() == NO_GPU_VISIBLE
    assert NO_GPU_VISIBLE.startswith("no GPU visible")
    missing = FakeNvml(init_error=NVMLError_LibraryNotFound("libnvidia-ml.so.1: cannot open"))
    assert NvmlSampler(missing).open().startswith("no NVIDIA driver")
    # list_gpus (canvas info) shares the reasons
    assert list_gpus(missing)[1].startswith("no NVIDIA driver")


def test_no_driver_gives_exactly_one_reason_event_and_nothing_else_breaks(run_session):
    fake = FakeNvml(init_error=NVMLError_LibraryNotFound("libnvidia-ml.so.1: cannot open"))
    with TelemetrySampler(run_session, interval=0.05, nvml=fake, carbon=False) as sampler:
        wait_until(lambda: len(events_of(run_session, "system")) >= 3, 30, what="three system samples")
    assert sampler.gpu_reason and sampler.dropped == 0
    gpu = events_of(run_session, "gpu")
    assert len(gpu) == 1
    assert gpu[0]["index"] == -1 and gpu[0]["reason"].startswith("no NVIDIA driver")
    assert len(events_of(run_session, "system")) >= 3  # the other telemetry goes on


@pytest.mark.skipif(list_gpus()[0] != [], reason="this machine has a GPU")
def test_the_real_nvml_on_this_gpu_less_machine_says_why(run_session):
    with TelemetrySampler(run_session, interval=0.05, carbon=False, system=False):
        time.sleep(0.2)
    (gpu,) = events_of(run_session, "gpu")
    assert gpu["index"] == -1 and gpu["reason"]


def test_the_sampler_streams_gpu_events_and_shuts_nvml_down(run_session):
    fake = FakeNvml(unsupported=("nvmlDeviceGetFanSpeed",))
    with TelemetrySampler(run_session, interval=0.05, nvml=fake, carbon=False, system=False):
        wait_until(
            lambda: all(
                len([g for g in events_of(run_session, "gpu") if g["index"] == i]) >= 3 for i in (0, 1)
            ),
            30,
            what="three samples of each GPU",
        )
    assert fake.initialised == 1 and fake.shut_down == 1
    gpu = events_of(run_session, "gpu")
    for index in (0, 1):
        mine = [g for g in gpu if g["index"] == index]
        assert len(mine) >= 3
        assert all(
            g["mem_total"] == 80 * 2**30
            and g["power_limit"] == 700.0
            and g["fan"] is None
            and g.get("reason") is None
            for g in mine
        )
    assert {g["proc_mem"] for g in gpu if g["index"] == 0} == {3 * 2**30}
