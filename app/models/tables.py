from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, one_of
from app.db.types import JSONType, UTCDateTime

MODEL_STATES = ("TRAINING", "READY", "FAILED")
DEVICE_CLASS_SETTINGS = ("auto", "gpu", "cpu")  # where its jobs run (app.jobs.service.device_class_for)
VERSION_STATES = ("ACTIVE", "RETIRED")


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(one_of("state", MODEL_STATES), name="state"),
        CheckConstraint(one_of("device_class", DEVICE_CLASS_SETTINGS), name="device_class"),
        UniqueConstraint("tenant_id", "name"),  # per tenant: a 409 must not reveal another's names
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(100))
    arch_config: Mapped[dict] = mapped_column(JSONType)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id"))
    recipe: Mapped[dict] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(20))
    head_version: Mapped[int | None] = mapped_column(Integer)
    # how its training records updates (None: not at all), and the log that describes the head now
    update_log_spec: Mapped[dict | None] = mapped_column(JSONType)
    update_log_id: Mapped[uuid.UUID | None] = mapped_column()
    device_class: Mapped[str] = mapped_column(String(10), default="auto", server_default="auto")
    # the elements of its checkpoint's tensors, from the architecture's layout at registration (None:
    # registered before it was recorded, and routed as a large model)
    parameter_count: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelVersion(Base):
    """An immutable checkpoint. The row is written in the same transaction that ends its job, after
    the file is complete in the artifact store, so a half-written version is never visible."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        CheckConstraint(one_of("state", VERSION_STATES), name="state"),
        Index("ix_model_versions_purge_after", "purge_after"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    parent_version: Mapped[int | None] = mapped_column(Integer)
    artifact_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(20))
    created_by_job_id: Mapped[uuid.UUID | None] = mapped_column()
    metrics: Mapped[dict] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # RETIRED: an erasure succeeded after it, so it still holds erased samples; its file is deleted
    # once purge_after has passed (purged_at then says when)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_by_job_id: Mapped[uuid.UUID | None] = mapped_column()
    purge_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
