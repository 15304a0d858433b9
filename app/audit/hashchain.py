"""The hash chain's arithmetic: what an event's hash covers (a verifier recomputes it from a row)."""

from __future__ import annotations

import uuid
from typing import Any

from app.audit.tables import AuditEvent
from app.core.hashing import canonical_json, sha256_hex

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
