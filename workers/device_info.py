"""What a worker's heartbeat says of its device: the GPU its jobs run on (by NVML, the library behind
nvidia-smi: name, memory, utilisation), or else the CPU (its count, the host's memory and load).

Read in the worker's main process, which never imports torch (workers/heartbeat.py): NVML answers
without a CUDA context. The GPU is the first one CUDA_VISIBLE_DEVICES leaves visible, the one the
job's ``cuda`` device is. A worker with UNLEARND_DEVICE=cpu, or without NVML, a driver or that GPU,
reports its CPU; a probe never fails a beat.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import psutil

log = logging.getLogger(__name__)


def first_visible_device(value: str | None) -> int | str | None:
    """The device CUDA makes ``cuda:0``, as CUDA_VISIBLE_DEVICES names it: an index (int), or a UUID
    or a UUID's leading part (``GPU-8932f937...``, ``MIG-...``); None when it hides every device.

    Unset, every device is visible and index 0 comes first. CUDA reads the list up to its first
    invalid entry, so an empty value, ``-1`` or a name that is neither hides them all. (An index is
    looked up in NVML's order, by PCI bus; CUDA's own order agrees with it when only one device is
    visible, as in each GPU worker's container, or with CUDA_DEVICE_ORDER=PCI_BUS_ID.)"""
    if value is None:
        return 0
    first = value.split(",", 1)[0].strip()
    if first.isdigit():
        return int(first)
    if first.startswith(("GPU-", "MIG-")) and len(first) > 4:
        return first
    return None


def gpu_info(nvml: Any, device: int | str) -> dict[str, Any]:
    """The GPU's name, memory and utilisation from an initialised NVML module (``pynvml``). Raises
    when the device is not there."""
    handle = nvml.nvmlDeviceGetHandleByIndex(device) if isinstance(device, int) else _by_uuid(nvml, device)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml.NVMLError:  # not supported (a MIG slice has none)
        utilization = None
    name = nvml.nvmlDeviceGetName(handle)
    return {
        "type": "gpu",
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_total_bytes": int(memory.total),
        "memory_used_bytes": int(memory.used),
        "utilization_percent": utilization,
    }


def _by_uuid(nvml: Any, uuid: str) -> Any:
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)  # a whole UUID (a MIG device's too)
    except nvml.NVMLError:
        pass
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    found = [h for h in handles if _text(nvml.nvmlDeviceGetUUID(h)).startswith(uuid)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} GPUs have a UUID that starts with {uuid}")
    return found[0]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def cpu_info() -> dict[str, Any]:
    """The host's memory and CPU load (since the previous call: the first call says 0)."""
    memory = psutil.virtual_memory()
    return {
        "type": "cpu",
        "name": None,
        "memory_total_bytes": memory.total,
        "memory_used_bytes": memory.total - memory.available,
        "utilization_percent": psutil.cpu_percent(interval=None),
    }


def _load_nvml() -> Any:
    import pynvml  # the nvidia-ml-py package: ctypes over libnvidia-ml, which only a GPU host has

    pynvml.nvmlInit()
    return pynvml


class DeviceProbe:
    """One per worker node; ``read()`` at each beat. NVML is loaded once, on the first read."""

    def __init__(self, device_setting: str, visible_devices: str | None, load_nvml=_load_nvml):
        self.gpu = None if device_setting == "cpu" else first_visible_device(visible_devices)
        self._load_nvml = load_nvml
        self._nvml: Any = None
        self._warned = False
        self._process = psutil.Process()

    def read(self) -> dict[str, Any]:
        try:
            found = self._gpu() or cpu_info()
        except Exception as exc:  # psutil itself: a beat goes out all the same
            self._warn(f"device probe failed: {type(exc).__name__}")
            found = {"type": "cpu"}
        return {**found, "cpu_count": _cpu_count(), "worker_rss_bytes": self._worker_rss()}

    def _gpu(self) -> dict[str, Any] | None:
        if self.gpu is None:
            return None
        try:
            if self._nvml is None:
                self._nvml = self._load_nvml()
            return gpu_info(self._nvml, self.gpu)
        except Exception as exc:  # no NVML library (a CPU host), no driver, no such device
            self._warn(f"no GPU {self.gpu!r} to report ({type(exc).__name__}: {exc}); reporting the CPU")
            if self._nvml is None:
                self.gpu = None  # no NVML at all: do not try again at every beat
            return None

    def _worker_rss(self) -> int | None:
        """Resident memory of this node and its pool processes (where the jobs run)."""
        try:
            total = self._process.memory_info().rss
            for child in self._process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # a child that exited meanwhile
                    continue
            return total
        except psutil.Error:
            return None

    def _warn(self, message: str) -> None:
        if not self._warned:
            log.info(message)
            self._warned = True


def _cpu_count() -> int | None:
    """The CPUs this process may run on (its affinity, which a container's cpuset limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()
