from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class CurrentJob(BaseModel):
    id: uuid.UUID
    started_at: datetime | None = Field(None, description="when the worker's pool began running it")


class WorkerOut(BaseModel):
    """No host or pid: workers are shared by every tenant and no key is above tenants."""

    name: str = Field(description="the Celery node name; jobs record it in `worker`")
    queues: list[str]
    started_at: datetime
    last_beat_at: datetime
    busy: bool = Field(description="whether it is running a job (of any tenant)")
    current_job: CurrentJob | None = Field(description="the job it runs, if it is your tenant's")


class WorkersOut(BaseModel):
    items: list[WorkerOut]
    heartbeat_interval_s: float
    expires_after_s: float = Field(description="a worker that has not beaten for this long is gone")
