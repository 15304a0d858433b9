from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, exists, insert, or_, select, text
from sqlalchemy.orm import Session

from app.audit.tables import AuditChainHead, AuditEvent, AuditInboxEvent
from app.core.tenancy import DEFAULT_TENANT

# Any constant works: it names the one lock every chainer takes (see lock_chain).
_CHAIN_LOCK_KEY = 0x756E6C6561726E  # "unlearn"


def lock_chain(db: Session, *, wait: bool) -> bool:
    """Make this transaction the one chainer until it ends (False: another holds it, and ``wait`` is
    off). Postgres: a transaction-scoped advisory lock. SQLite: every write transaction already
    holds the database write lock from BEGIN IMMEDIATE (see app.db.session)."""
    if db.get_bind().dialect.name != "postgresql":
        return True
    if wait:
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_KEY})
        return True
    return bool(db.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_KEY}))


def last_link(db: Session) -> tuple[int, str, datetime] | None:
    row = db.execute(
        select(AuditEvent.seq, AuditEvent.hash, AuditEvent.occurred_at).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    return None if row is None else (row.seq, row.hash, row.occurred_at)


def add_all(db: Session, events: list[AuditEvent]) -> None:
    """Chained events."""
    db.add_all(events)
    db.flush()


INBOX = AuditInboxEvent.__table__


def add_to_inbox(db: Session, events: list[dict]) -> None:
    """Events for the inbox: nobody needs their ids here, so Core's INSERT without RETURNING, and no
    ORM objects to build and flush (the ORM's bulk INSERT reads ids back too)."""
    db.connection().execute(insert(INBOX), events)


def inbox_batch(db: Session, limit: int) -> list[AuditInboxEvent]:
    """The oldest waiting events, in the order they were written."""
    return list(db.scalars(select(AuditInboxEvent).order_by(AuditInboxEvent.id).limit(limit)))


def inbox_has_events(db: Session) -> bool:
    return db.scalar(select(AuditInboxEvent.id).limit(1)) is not None


def delete_from_inbox(db: Session, ids: list[int]) -> None:
    db.execute(delete(AuditInboxEvent).where(AuditInboxEvent.id.in_(ids)))


def recorded(job_id, action: str):
    """A SQL condition: an event of this action was recorded for the job (an id, or a column to
    correlate with), chained or still waiting in the inbox."""
    return or_(
        exists().where(AuditEvent.job_id == job_id, AuditEvent.action == action),
        exists().where(AuditInboxEvent.job_id == job_id, AuditInboxEvent.action == action),
    )


def tenant_clause(tenant_id: str):
    """A tenant's events; events from before tenants existed (NULL) are the default tenant's."""
    if tenant_id == DEFAULT_TENANT:
        return or_(AuditEvent.tenant_id == tenant_id, AuditEvent.tenant_id.is_(None))
    return AuditEvent.tenant_id == tenant_id


def in_tenant(event: AuditEvent, tenant_id: str) -> bool:
    """tenant_clause for a row already read (the export walks every tenant's rows)."""
    return event.tenant_id == tenant_id or (event.tenant_id is None and tenant_id == DEFAULT_TENANT)


def search(
    db: Session,
    *,
    tenant_id: str,
    model_id: uuid.UUID | None,
    forget_request_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after_seq: int | None,
    limit: int,
    up_to_seq: int | None = None,
) -> list[AuditEvent]:
    q = select(AuditEvent).where(tenant_clause(tenant_id)).order_by(AuditEvent.seq).limit(limit)
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
    if up_to_seq is not None:
        q = q.where(AuditEvent.seq <= up_to_seq)
    return list(db.scalars(q))


def hash_at(db: Session, seq: int) -> str | None:
    return db.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq))


def chain_batch(db: Session, *, after_seq: int, up_to_seq: int, limit: int) -> list[AuditEvent]:
    """The next ``limit`` events after ``after_seq`` (keyset on the primary key), oldest first."""
    q = (
        select(AuditEvent)
        .where(AuditEvent.seq > after_seq, AuditEvent.seq <= up_to_seq)
        .order_by(AuditEvent.seq)
        .limit(limit)
    )
    return list(db.scalars(q))


def end_read(db: Session) -> None:
    """End the read transaction between batches of a long walk.

    On SQLite every transaction takes the write lock at BEGIN (app.db.session), so a walk held in
    one transaction would block every writer until it ends. Nothing is lost by ending it: the rows
    are append-only and walks stop at a seq fixed before they start, so later batches see the
    same rows an all-in-one snapshot would. Rows are detached first so the rollback does not
    expire them (reading an expired attribute would reload each row with a query of its own).
    """
    db.expunge_all()
    db.rollback()


def latest_event_of_job(
    db: Session, *, forget_request_id: uuid.UUID, job_id: uuid.UUID, actions: Sequence[str]
) -> AuditEvent | None:
    """The newest of these actions recorded for this request and job (uses
    ix_audit_events_forget_request_id_seq: a request has a handful of events)."""
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


def add_head(db: Session, head: AuditChainHead) -> None:
    db.add(head)
    db.flush()


def latest_head(db: Session) -> AuditChainHead | None:
    return db.scalar(select(AuditChainHead).order_by(AuditChainHead.id.desc()).limit(1))


def head_at_or_after(db: Session, seq: int) -> AuditChainHead | None:
    """The earliest head that covers event ``seq``."""
    q = select(AuditChainHead).where(AuditChainHead.seq >= seq).order_by(AuditChainHead.seq, AuditChainHead.id)
    return db.scalar(q.limit(1))


def heads(
    db: Session, *, from_seq: int = 1, to_seq: int | None = None, after_id: int | None = None, limit: int | None = None
) -> list[AuditChainHead]:
    """Heads for events ``from_seq``..``to_seq``, in the order they were signed."""
    q = select(AuditChainHead).where(AuditChainHead.seq >= from_seq).order_by(AuditChainHead.id)
    if to_seq is not None:
        q = q.where(AuditChainHead.seq <= to_seq)
    if after_id is not None:
        q = q.where(AuditChainHead.id > after_id)
    if limit is not None:
        q = q.limit(limit)
    return list(db.scalars(q))
