"""What a worker's heartbeat says of its device (workers/device_info.py).

The GPU path needs NVML and a GPU, which this machine lacks: those tests inject a fake NVML module
and so test only our reading of its answers (which device CUDA_VISIBLE_DEVICES picks, which fields
come back, what happens when NVML fails), not NVML itself. The CPU path runs for real.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from workers.device_info import DeviceProbe, first_visible_device, gpu_info

GIB = 1024**3


@pytest.mark.parametrize(
    ("value", "device"),
    [
        (None, 0),  # unset: every GPU visible, index 0 first
        ("0", 0),
        ("1", 1),
        (" 3 ,0", 3),  # the first entry is cuda:0
        ("GPU-8932f937-d72c-4106-c12f-20bd9faed9f6,1", "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"),
        ("GPU-8932f937", "GPU-8932f937"),  # a UUID's leading part, as CUDA takes it
        ("MIG-5c38c2d8-7a6b-5a0e-9c3b-4c7b7e3a1f00", "MIG-5c38c2d8-7a6b-5a0e-9c3b-4c7b7e3a1f00"),
        ("", None),  # every GPU hidden
        ("-1", None),
        ("-1,0", None),  # CUDA stops at the first invalid entry
        ("nvidia0", None),
        ("GPU-", None),
    ],
)
def test_cuda_visible_devices_names_the_first_visible_device(value, device):
    assert first_visible_device(value) == device


class FakeNVML:
    """Two GPUs answering as pynvml does (str names and UUIDs, ctypes-like structs)."""

    class NVMLError(Exception):
        pass

    def __init__(self, utilization_supported: bool = True):
        self.gpus = [
            ("GPU-aaaa1111-0000-0000-0000-000000000000", "NVIDIA H200", 141 * GIB, 3 * GIB, 87),
            ("GPU-bbbb2222-0000-0000-0000-000000000000", "NVIDIA A100-SXM4-80GB", 80 * GIB, 70 * GIB, 12),
        ]
        self.utilization_supported = utilization_supported
        self.inits = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.gpus):
            raise self.NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for i, gpu in enumerate(self.gpus):
            if gpu[0] == uuid:
                return i
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, handle):
        return self.gpus[handle][0]

    def nvmlDeviceGetName(self, handle):
        return self.gpus[handle][1].encode()  # older pynvml versions answer bytes

    def nvmlDeviceGetMemoryInfo(self, handle):
        _, _, total, used, _ = self.gpus[handle]
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle):
        if not self.utilization_supported:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=self.gpus[handle][4], memory=0)


def test_gpu_info_reads_the_device_by_index_or_uuid():
    nvml = FakeNVML()
    h200 = {
        "type": "gpu",
        "name": "NVIDIA H200",
        "memory_total_bytes": 141 * GIB,
        "memory_used_bytes": 3 * GIB,
        "utilization_percent": 87.0,
    }
    assert gpu_info(nvml, 0) == h200
    assert gpu_info(nvml, "GPU-aaaa1111-0000-0000-0000-000000000000") == h200
    assert gpu_info(nvml, "GPU-bbbb")["name"] == "NVIDIA A100-SXM4-80GB"  # a leading part of its UUID
    with pytest.raises(LookupError):
        gpu_info(nvml, "GPU-cccc")
    with pytest.raises(FakeNVML.NVMLError):
        gpu_info(nvml, 2)
    assert gpu_info(FakeNVML(utilization_supported=False), 1)["utilization_percent"] is None  # e.g. a MIG slice


def test_the_probe_reports_the_visible_gpu_and_loads_nvml_once():
    nvml = FakeNVML()

    def load():
        nvml.nvmlInit()
        return nvml

    probe = DeviceProbe("auto", "1,0", load_nvml=load)
    for _ in range(3):
        device = probe.read()
        assert device["type"] == "gpu" and device["name"] == "NVIDIA A100-SXM4-80GB"
        assert device["memory_used_bytes"] == 70 * GIB and device["utilization_percent"] == 12.0
        assert device["cpu_count"] >= 1 and device["worker_rss_bytes"] > 10 * 1024**2  # this Python process
    assert nvml.inits == 1


def _no_nvml():
    raise OSError("NVML Shared Library Not Found")


@pytest.mark.parametrize(
    ("setting", "visible", "load"),
    [
        ("auto", None, _no_nvml),  # this machine: no NVML library
        ("cuda", "5", FakeNVML),  # no such GPU
        ("auto", "-1", FakeNVML),  # every GPU hidden
        ("cpu", "0", FakeNVML),  # told to run on the CPU
    ],
)
def test_without_a_gpu_to_report_the_probe_reports_the_cpu(setting, visible, load):
    probe = DeviceProbe(setting, visible, load_nvml=load)
    for _ in range(2):  # and keeps beating
        device = probe.read()
        assert device["type"] == "cpu" and device["name"] is None
        assert device["cpu_count"] >= 1
        assert 0 < device["memory_used_bytes"] < device["memory_total_bytes"]
        assert 0 <= device["utilization_percent"] <= 100
        assert device["worker_rss_bytes"] > 10 * 1024**2
