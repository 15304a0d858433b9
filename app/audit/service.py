"""The audit trail: every state change records an event in the same transaction as the change.

Events are hash-chained: ``hash = sha256(prev_hash || canonical JSON of the event)``. Payloads carry
counts and hashes, never raw personal data (sample-ID lists are referenced by their sha256). A
transaction's events are committed to the inbox with it and chained moments later by the sequencer
(app/audit/sequencer.py), so writers never wait for each other on the chain.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.audit import repository, sequencer
from app.audit.hashchain import GENESIS_HASH, chained_body, event_hash
from app.db.types import utcnow

__all__ = ["GENESIS_HASH", "chained_body", "event_hash", "record", "take_pending"]


def record(
    db: Session,
    *,
    action: str,
    actor: str,
    tenant_id: str,
    entity_type: str,
    entity_id: uuid.UUID | str,
    model_id: uuid.UUID | None = None,
    forget_request_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Queue an event on this transaction: it is written to the inbox when the transaction commits
    and chained after (never outliving a rollback: the queue is dropped with the transaction)."""
    db.info.setdefault(_PENDING, []).append(
        {
            "actor": actor,
            "tenant_id": tenant_id,
            "action": action,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "model_id": model_id,
            "forget_request_id": forget_request_id,
            "job_id": job_id,
            "payload": payload or {},
        }
    )


_PENDING = "audit_events_pending"
_WROTE = "audit_events_written"


def take_pending(db: Session) -> list[dict[str, Any]]:
    """The events queued on this transaction, as inbox rows; the commit wakes the sequencer after."""
    pending = db.info.pop(_PENDING, None)
    if pending:
        db.info[_WROTE] = True
    occurred_at = utcnow()
    return [{**fields, "occurred_at": occurred_at} for fields in pending or []]


@event.listens_for(Session, "before_commit")
def _write_pending(db: Session) -> None:
    rows = take_pending(db)
    if rows:
        repository.add_to_inbox(db, rows)


@event.listens_for(Session, "after_commit")
def _chain_soon(db: Session) -> None:
    if db.info.pop(_WROTE, False):
        sequencer.wake()


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(db: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed (queue already written) or not
        db.info.pop(_PENDING, None)
