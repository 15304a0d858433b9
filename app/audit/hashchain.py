"""The hash chain's arithmetic: the exact bytes an event's hash covers (README "Audit trail" spells
them out, so an auditor can recompute every hash without this code). Pure: the offline verifier
imports it without a database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.core.hashing import canonical_json, sha256_hex

if TYPE_CHECKING:
    from app.audit.tables import AuditEvent

GENESIS_HASH = "0" * 64


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def chained_body(event: AuditEvent) -> dict[str, Any]:
    """The exact fields the hash covers; the JSON Lines export carries this object verbatim.

    The tenant is covered from migration 0005 on; events written before it have none (the key is
    absent, not null), and their hash, computed without one, must still verify.
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


def body_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """sha256 hex of the UTF-8 bytes of ``prev_hash`` (64 hex characters) followed by the body's
    canonical JSON (keys sorted at every level, no whitespace, non-ASCII kept as UTF-8)."""
    return sha256_hex(prev_hash + canonical_json(body))


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    return body_hash(prev_hash, chained_body(event))
