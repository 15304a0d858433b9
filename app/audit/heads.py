"""Signed chain heads: the service's key signs ``{seq, hash, signed_at, kid}`` of the chain's last
event, periodically (the reconciler), for every certificate and on demand. A head pins the chain up
to its seq: a later rewrite or truncation of those events no longer matches it. Events after the
latest head are protected only once a later head is signed.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from app.audit import repository
from app.audit.offline import HEAD_TYPE, Head, read_head
from app.audit.tables import AuditChainHead
from app.certificates.keys import signing_key
from app.certificates.offline import ALG, b64url_encode
from app.core.hashing import canonical_json
from app.db.types import utcnow


def sign_head(db: Session) -> AuditChainHead | None:
    """A head for the chain's last event (the latest head again if it already names it; None for an
    empty chain). Chain what waits first (sequencer.flush) so the head covers it. Caller commits."""
    # one signer at a time, and never beside a chainer: heads are stored in seq order
    repository.lock_chain(db, wait=True)
    last = repository.last_link(db)
    if last is None:
        return None
    latest = repository.latest_head(db)
    if latest is not None and latest.seq == last[0]:
        return latest
    key = signing_key()
    signed_at = utcnow()
    statement = {
        "type": HEAD_TYPE,
        "version": 1,
        "seq": last[0],
        "hash": last[1],
        "signed_at": signed_at.isoformat(),
        "kid": key.kid,
    }
    text = canonical_json(statement)
    row = AuditChainHead(
        seq=last[0],
        hash=last[1],
        signed_at=signed_at,
        kid=key.kid,
        statement=text,
        signature=b64url_encode(key.sign(text.encode("utf-8"))),
    )
    repository.add_head(db, row)
    return row


def document(row: AuditChainHead) -> dict[str, Any]:
    """What an auditor keeps and passes back to verify: the signed statement verbatim and its signature."""
    return {"head": json.loads(row.statement), "signature": {"alg": ALG, "kid": row.kid, "value": row.signature}}


def stored_head(row: AuditChainHead) -> Head:
    """A stored head checked against the service's key; ValueError with the reason otherwise (also
    when the columns the queries use disagree with the statement that was signed)."""
    head = read_head(document(row), signing_key().private.public_key(), origin="stored")
    if (head.seq, head.hash) != (row.seq, row.hash):
        raise ValueError(f"stored chain head {row.id}: its columns disagree with its signed statement")
    return head


def supplied_head(doc: dict[str, Any]) -> Head:
    return read_head(doc, signing_key().private.public_key(), origin="supplied")
