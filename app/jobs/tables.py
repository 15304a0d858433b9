from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, one_of
from app.db.types import JSONType, UTCDateTime
from app.jobs.states import ACTIVE, STATES
from app.queue import DEVICE_CLASSES

JOB_KINDS = ("train", "unlearn")
_ACTIVE_SQL = one_of("state", ACTIVE)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(one_of("state", STATES), name="state"),
        CheckConstraint(one_of("kind", JOB_KINDS), name="kind"),
        CheckConstraint(one_of("device_class", DEVICE_CLASSES), name="device_class"),
        CheckConstraint("state != 'SUCCEEDED' OR result_version IS NOT NULL", name="succeeded_has_result"),
        CheckConstraint("state != 'FAILED' OR error IS NOT NULL", name="failed_has_error"),
        CheckConstraint(
            "state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED') OR finished_at IS NOT NULL", name="finished_at"
        ),
        # Jobs for one model run one at a time: the head version moves linearly.
        Index(
            "uq_jobs_one_active_per_model",
            "model_id",
            unique=True,
            postgresql_where=text(_ACTIVE_SQL),
            sqlite_where=text(_ACTIVE_SQL),
        ),
        Index("ix_jobs_state_enqueued_at", "state", "enqueued_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # re-sent by the reconciler while its model was idle and a worker of its queue idle, yet never claimed
    unclaimed_sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # gpu or cpu: the queue it is published to (app.queue), decided at creation from its model
    # (app.jobs.service.device_class_for) and kept for every re-send
    device_class: Mapped[str] = mapped_column(String(10), default="gpu", server_default="gpu")
    method: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict] = mapped_column(JSONType)
    # the requests' changes to the verification policy, and what a failed verification does (unlearn)
    verification: Mapped[dict | None] = mapped_column(JSONType)
    on_verification_failure: Mapped[str | None] = mapped_column(String(10))
    source_version: Mapped[int | None] = mapped_column(Integer)
    result_version: Mapped[int | None] = mapped_column(Integer)
    progress_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    progress_phase: Mapped[str | None] = mapped_column(String(50))
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict | None] = mapped_column(JSONType)
    error: Mapped[dict | None] = mapped_column(JSONType)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRequest(Base):
    """Which forget requests a job serves (several, once requests are coalesced)."""

    __tablename__ = "job_requests"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    forget_request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forget_requests.id"), primary_key=True, index=True)


class JobBatch(Base):
    """One training/unlearning batch of one attempt of a job."""

    __tablename__ = "job_batches"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase: Mapped[str] = mapped_column(String(50))
    epoch: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    samples_seen: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
