from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.audit.tables import AuditEvent

# Any constant works: it names the one lock every audit writer takes (see lock_chain).
_CHAIN_LOCK_KEY = 0x756E6C6561726E  # "unlearn"


def lock_chain(db: Session) -> None:
    """Serialise chain appends until this transaction ends, so concurrent writers cannot fork it.

    Postgres: a transaction-scoped advisory lock. SQLite: every write transaction already holds
    the database write lock from BEGIN IMMEDIATE (see app.db.session).
    """
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_KEY})


def last_link(db: Session) -> tuple[int, str] | None:
    row = db.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return None if row is None else (row.seq, row.hash)


def add_all(db: Session, events: list[AuditEvent]) -> None:
    db.add_all(events)
    db.flush()


def search(
    db: Session,
    *,
    model_id: uuid.UUID | None,
    forget_request_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after_seq: int | None,
    limit: int,
) -> list[AuditEvent]:
    q = select(AuditEvent).order_by(AuditEvent.seq).limit(limit)
    if model_id:
        q = q.where(AuditEvent.model_id == model_id)
    if forget_request_id:
        q = q.where(AuditEvent.forget_request_id == forget_request_id)
    if job_id:
        q = q.where(AuditEvent.job_id == job_id)
    if action:
        q = q.where(AuditEvent.action == action)
    if since:
        q = q.where(AuditEvent.occurred_at >= since)
    if until:
        q = q.where(AuditEvent.occurred_at < until)
    if after_seq is not None:
        q = q.where(AuditEvent.seq > after_seq)
    return list(db.scalars(q))
