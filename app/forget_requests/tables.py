from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, one_of
from app.db.types import JSONType, UTCDateTime
from app.jobs.states import STATES

SCOPE_TYPES = ("sample_ids", "class_labels")
# A request in one of these states no longer owes anything: erased, or withdrawn by its sender.
# Every other state past due_at is overdue (FAILED included: the erasure is still owed).
DISCHARGED_STATES = ("SUCCEEDED", "CANCELLED")


class ForgetRequest(Base):
    """The legal intent: forget this scope from this model. Its state follows its job's."""

    __tablename__ = "forget_requests"
    __table_args__ = (
        CheckConstraint(one_of("state", STATES), name="state"),
        CheckConstraint(one_of("scope_type", SCOPE_TYPES), name="scope_type"),
        UniqueConstraint("tenant_id", "request_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    request_id: Mapped[str] = mapped_column(String(200))  # the client's own id, unique per tenant
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id"), index=True)
    regulation: Mapped[str] = mapped_column(String(20))
    subject_ref: Mapped[str | None] = mapped_column(String(64))  # keyed HMAC, never the raw identifier
    scope_type: Mapped[str] = mapped_column(String(20))
    scope_values: Mapped[list] = mapped_column(JSONType)  # stored once; audit events carry its hash
    scope_count: Mapped[int] = mapped_column(Integer)
    scope_sha256: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict] = mapped_column(JSONType)
    # changes to the default verification policy (with the reason when one is loosened), or None
    verification: Mapped[dict | None] = mapped_column(JSONType)
    on_verification_failure: Mapped[str | None] = mapped_column(String(10))  # fail | escalate | accept
    state: Mapped[str] = mapped_column(String(20))
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # the legal deadline
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """The first answer given to an Idempotency-Key, replayed for retries with the same body."""

    __tablename__ = "idempotency_keys"

    # per tenant: one tenant's key must never replay another tenant's answer
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSONType)
    location: Mapped[str | None] = mapped_column(String(300))
    forget_request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forget_requests.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
