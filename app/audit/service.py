"""The audit trail: every state change appends an event in the same transaction as the change.

Events are hash-chained: ``hash = sha256(prev_hash || canonical JSON of the event)``. Payloads carry
counts and hashes, never raw personal data (sample-ID lists are referenced by their sha256).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.audit import repository
from app.audit.tables import AuditEvent
from app.core.hashing import canonical_json, sha256_hex
from app.db.types import utcnow

GENESIS_HASH = "0" * 64


def _opt(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def chained_body(event: AuditEvent) -> dict[str, Any]:
    """The exact fields the hash covers (a verifier recomputes it from a row).

    The tenant is covered from migration 0005 on; events written before it have none, and their
    hash, computed without one, must still verify.
    """
    body = {
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "entity": {"type": event.entity_type, "id": event.entity_id},
        "model_id": _opt(event.model_id),
        "forget_request_id": _opt(event.forget_request_id),
        "job_id": _opt(event.job_id),
        "payload": event.payload,
    }
    if event.tenant_id is not None:
        body["tenant_id"] = event.tenant_id
    return body


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    return sha256_hex(prev_hash + canonical_json(chained_body(event)))


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
    """Queue an event on this transaction; it is chained and written when the transaction commits.

    Appending to the chain takes the one lock every audit writer shares. Taking it here would hold it
    for the rest of the transaction (every later query of a POST); taking it at commit holds it for
    one read and one insert, so concurrent requests no longer queue behind each other. An event
    never outlives a rollback: the queue is dropped with the transaction.
    """
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


@event.listens_for(Session, "before_commit")
def _append_pending(db: Session) -> None:
    pending = db.info.pop(_PENDING, None)
    if not pending:
        return
    repository.lock_chain(db)
    last = repository.last_link(db)
    seq, prev_hash = (1, GENESIS_HASH) if last is None else (last[0] + 1, last[1])
    occurred_at = utcnow()  # read under the lock: timestamps never go backwards along the chain
    rows = []
    for fields in pending:
        row = AuditEvent(seq=seq, occurred_at=occurred_at, prev_hash=prev_hash, **fields)
        row.hash = prev_hash = event_hash(prev_hash, row)
        rows.append(row)
        seq += 1
    repository.add_all(db, rows)


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(db: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed (queue already written) or not
        db.info.pop(_PENDING, None)
