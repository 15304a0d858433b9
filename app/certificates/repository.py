"""The one query certificates need that no other repository has: the audit event they anchor to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.tables import AuditEvent


def latest_event(
    db: Session, *, forget_request_id: uuid.UUID, job_id: uuid.UUID, actions: Sequence[str]
) -> AuditEvent | None:
    """Uses ix_audit_events_forget_request_id_seq: a request has a handful of events."""
    return db.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.forget_request_id == forget_request_id,
            AuditEvent.job_id == job_id,
            AuditEvent.action.in_(actions),
        )
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
