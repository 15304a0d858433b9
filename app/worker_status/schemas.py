from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class CurrentJob(BaseModel):
    id: uuid.UUID
    started_at: datetime | None = Field(None, description="when the worker's pool began running it")


class WorkerDevice(BaseModel):
    """What the worker runs its jobs on, as of its last beat (workers/device_info.py)."""

    type: Literal["gpu", "cpu"] = Field(
        description="gpu: the first GPU CUDA_VISIBLE_DEVICES leaves visible, read by NVML; cpu: no GPU to report "
        "(UNLEARND_DEVICE=cpu, or no NVML, driver or such device)"
    )
    name: str | None = Field(None, description="the GPU's model name (null for cpu)")
    memory_total_bytes: int | None = Field(None, description="the GPU's memory; cpu: the host's")
    memory_used_bytes: int | None = Field(
        None, description="in use on the GPU, by every process; cpu: in use on the host (total less available)"
    )
    utilization_percent: float | None = Field(
        None,
        description="gpu: the share of NVML's last sample period a kernel ran (null where unsupported, e.g. a "
        "MIG slice); cpu: the host's CPU load since the previous beat",
    )
    cpu_count: int | None = Field(None, description="the CPUs the worker may run on")
    worker_rss_bytes: int | None = Field(
        None, description="resident host memory of the worker: its node and the pool process running the job"
    )


class WorkerOut(BaseModel):
    """No host or pid: workers are shared by every tenant and no key is above tenants."""

    name: str = Field(description="the Celery node name; jobs record it in `worker`")
    queues: list[str]
    device_classes: list[str] = Field(
        [], description="the device classes (gpu, cpu) whose job queues it consumes: the jobs it may take"
    )
    device: WorkerDevice | None = Field(None, description="its device (null from a worker that does not report one)")
    started_at: datetime
    last_beat_at: datetime
    busy: bool = Field(description="whether it is running a job (of any tenant)")
    current_job: CurrentJob | None = Field(description="the job it runs, if it is your tenant's")


class WorkersOut(BaseModel):
    items: list[WorkerOut]
    heartbeat_interval_s: float
    expires_after_s: float = Field(description="a worker that has not beaten for this long is gone")
