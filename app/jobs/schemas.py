from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    device_class: str = Field(
        description="gpu or cpu: the queue it is sent to, from its model's device_class when it was created."
    )
    verification: dict[str, Any] | None = Field(None, description="The requests' changes to the verification policy.")
    on_verification_failure: str | None = None
    source_version: int | None
    result_version: int | None
    progress: ProgressOut
    metrics: dict[str, Any] | None
    error: dict[str, Any] | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    forget_request_ids: list[uuid.UUID] = Field(
        [],
        description="The forget requests the job serves. Inside a forget request's answer, only that "
        "request (a coalesced job may serve hundreds): GET /v1/jobs/{id} lists them all.",
    )
    requests_served: int = Field(0, description="How many forget requests the job serves (coalesced).")

    @classmethod
    def of(cls, job, forget_request_ids: list[uuid.UUID] | None = None, requests_served: int | None = None) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            model_id=job.model_id,
            state=job.state,
            attempt=job.attempt,
            method=job.method,
            params=job.params,
            device_class=job.device_class,
            verification=job.verification,
            on_verification_failure=job.on_verification_failure,
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
            requests_served=len(forget_request_ids or []) if requests_served is None else requests_served,
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
