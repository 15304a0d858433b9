"""Streaming export of the audit trail (JSON Lines or CSV) for auditors.

A JSON Lines event is the hashed body verbatim (app.audit.hashchain.chained_body) plus ``prev_hash``
and ``hash``, so ``hash == sha256(prev_hash + canonical JSON of the line without those two)``; the
signed chain heads follow the events. CSV flattens the entity into two columns (README "Audit
trail"). Rows are read in keyset batches by a session of the export's own (the request's session is
gone by the time the body streams) and the walk stops at a seq fixed when it starts, so an export is
a consistent slice of the chain while writers keep appending.

The chain is one for every tenant. Without content filters an export walks all of it in the seq
range and writes another tenant's event as a link-only record (seq, prev_hash, hash, ``redacted``),
so the caller's auditor can re-walk the chain and its heads offline without seeing that event.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from app.audit import heads, repository
from app.audit.hashchain import chained_body
from app.audit.offline import HEAD_LINE_KEY, REDACTED_KEY
from app.audit.tables import EVENT_FIELDS, AuditChainHead, AuditEvent
from app.audit.verification import BATCH_SIZE, chain_end
from app.core.hashing import canonical_json
from app.db.session import new_read_session

ExportFormat = Literal["jsonl", "csv"]

MEDIA_TYPES: dict[str, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
COLUMNS = ("seq", "occurred_at", *EVENT_FIELDS, "prev_hash", "hash", REDACTED_KEY)


def _opt(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def csv_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(),  # the exact string the hash covers
        "tenant_id": event.tenant_id,  # covered by the hash when not null
        "actor": event.actor,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "model_id": _opt(event.model_id),
        "forget_request_id": _opt(event.forget_request_id),
        "job_id": _opt(event.job_id),
        "payload": event.payload,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        REDACTED_KEY: None,  # an empty cell: the caller's own event, in full
    }


def link_record(event: AuditEvent) -> dict[str, Any]:
    """Another tenant's event: only what linking the chain needs, nothing of its content."""
    return {"seq": event.seq, "prev_hash": event.prev_hash, "hash": event.hash, REDACTED_KEY: True}


def jsonl_record(event: AuditEvent) -> dict[str, Any]:
    return {**chained_body(event), "prev_hash": event.prev_hash, "hash": event.hash}


def jsonl_chunk(events: list[AuditEvent], tenant_id: str) -> str:
    records = (jsonl_record(e) if repository.in_tenant(e, tenant_id) else link_record(e) for e in events)
    # canonical_json sorts keys at every level: each line is already the canonical form
    return "".join(canonical_json(r) + "\n" for r in records)


def jsonl_heads(rows: list[AuditChainHead]) -> str:
    return "".join(canonical_json({HEAD_LINE_KEY: heads.document(h)}) + "\n" for h in rows)


def csv_chunk(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def csv_row(event: AuditEvent, tenant_id: str) -> list[Any]:
    if not repository.in_tenant(event, tenant_id):
        shown = {**link_record(event), REDACTED_KEY: "true"}  # every other cell empty
        return [shown.get(c, "") for c in COLUMNS]
    record = csv_record(event)
    record["payload"] = canonical_json(record["payload"])  # a cell holds text: the canonical form
    return ["" if record[c] is None else record[c] for c in COLUMNS]


def stream_export(
    fmt: ExportFormat,
    *,
    tenant_id: str,
    model_id: uuid.UUID | None = None,
    forget_request_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[str]:
    """The export body, chunk by chunk; the session lives exactly as long as the stream."""
    filters = dict(model_id=model_id, forget_request_id=forget_request_id, job_id=job_id, action=action)
    filters.update(since=since, until=until)
    # a filtered export has gaps anyway, and a link there would tell which of another tenant's events
    # match the filter: only the unfiltered one walks the whole chain (theirs as links), gap-free
    whole_chain = all(v is None for v in filters.values())
    db = new_read_session()
    try:
        if fmt == "csv":
            yield csv_chunk([list(COLUMNS)])
        # JSON Lines ends with the heads of the range, read before its end is fixed (none is past
        # it); with no to_seq they include any past the chain's end: a deleted tail shows offline
        signed = repository.heads(db, from_seq=from_seq or 1, to_seq=to_seq) if fmt == "jsonl" else []
        end = chain_end(db, to_seq)
        after = (from_seq or 1) - 1
        while end is not None and after < end:
            if whole_chain:
                batch = repository.chain_batch(db, after_seq=after, up_to_seq=end, limit=batch_size)
            else:
                batch = repository.search(
                    db, tenant_id=tenant_id, **filters, after_seq=after, up_to_seq=end, limit=batch_size
                )
            repository.end_read(db)  # no transaction (no SQLite write lock) held while the client reads
            if not batch:
                break
            if fmt == "jsonl":
                yield jsonl_chunk(batch, tenant_id)
            else:
                yield csv_chunk([csv_row(e, tenant_id) for e in batch])
            after = batch[-1].seq
        if signed:
            yield jsonl_heads(signed)
    finally:
        db.close()
