from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class ProgressOut(BaseModel):
    fraction: float
    phase: str | None
    step: int
    total_steps: int | None


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str
    model_id: uuid.UUID
    state: str
    attempt: int
    method: str
    params: dict[str, Any]
    source_version: int | None
    result_version: int | None
    progress: ProgressOut
    metrics: dict[str, Any] | None
    error: dict[str, Any] | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    forget_request_ids: list[uuid.UUID] = []

    @classmethod
    def of(cls, job, forget_request_ids: list[uuid.UUID] | None = None) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            model_id=job.model_id,
            state=job.state,
            attempt=job.attempt,
            method=job.method,
            params=job.params,
            source_version=job.source_version,
            result_version=job.result_version,
            progress=ProgressOut(
                fraction=job.progress_fraction,
                phase=job.progress_phase,
                step=job.progress_step,
                total_steps=job.total_steps,
            ),
            metrics=job.metrics,
            error=job.error,
            worker=job.worker,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            forget_request_ids=forget_request_ids or [],
        )


class BatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    step: int
    phase: str
    epoch: int
    batch: int
    loss: float | None
    grad_norm: float | None
    lr: float | None
    samples_seen: int
    recorded_at: datetime
