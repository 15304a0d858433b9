from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from app.audit import export, repository, sequencer, verification
from app.audit.export import ExportFormat
from app.audit.schemas import AuditEventOut, ChainVerificationOut
from app.auth.deps import AuditReader
from app.core.deps import SessionDep
from app.core.pagination import Page, PageSize, PageToken, decode_int_token, page_of
from app.core.validation import INT64_MAX, Instant, PrintableText

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


def _chain_first() -> None:
    """Events committed before this request may still wait in the inbox: chain them before reading."""
    sequencer.flush()


ChainedFirst = Annotated[None, Depends(_chain_first)]


class EventFilter:
    """The filters the search and the export share (query parameters)."""

    def __init__(
        self,
        model_id: uuid.UUID | None = None,
        forget_request_id: uuid.UUID | None = None,
        job_id: uuid.UUID | None = None,
        action: Annotated[PrintableText | None, Query(max_length=100)] = None,
        since: Annotated[Instant | None, Query(description="Inclusive lower bound on occurred_at.")] = None,
        until: Annotated[Instant | None, Query(description="Exclusive upper bound on occurred_at.")] = None,
    ):
        self.values = {
            "model_id": model_id,
            "forget_request_id": forget_request_id,
            "job_id": job_id,
            "action": action,
            "since": since,
            "until": until,
        }


Filters = Annotated[EventFilter, Depends()]


@router.get("", response_model=Page[AuditEventOut], summary="Search the audit trail (oldest first)")
def list_audit_events(
    db: SessionDep,
    caller: AuditReader,
    _chained: ChainedFirst,
    filters: Filters,
    page_size: PageSize = 50,
    page_token: PageToken = None,
):
    cursor = decode_int_token(page_token, 1, INT64_MAX)
    rows = repository.search(
        db,
        tenant_id=caller.tenant_id,
        **filters.values,
        after_seq=cursor[0] if cursor else None,
        limit=page_size + 1,
    )
    return page_of(rows, page_size, key=lambda r: [r.seq], convert=AuditEventOut.model_validate)


FromSeq = Annotated[
    int | None, Query(ge=1, le=INT64_MAX, description="First seq (default 1, the chain's first event).")
]
ToSeq = Annotated[
    int | None, Query(ge=1, le=INT64_MAX, description="Last seq (default: the newest when the walk starts).")
]


@router.get(
    "/verify",
    response_model=ChainVerificationOut,
    summary="Re-walk the hash chain; report the first break",
    description="The chain is one for the whole service (every tenant's events are links of it), so the "
    "walk covers all of them; the answer holds only seq numbers and hashes, no event of another tenant.",
)
def verify_audit_chain(
    db: SessionDep,
    caller: AuditReader,
    _chained: ChainedFirst,
    from_seq: FromSeq = None,
    to_seq: ToSeq = None,
):
    return verification.verify_chain(db, from_seq=from_seq, to_seq=to_seq)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "Every column of each matching event, oldest first; hashes re-checkable offline.",
        }
    },
    summary="Export the audit trail as JSON Lines or CSV (streamed)",
)
def export_audit_events(
    caller: AuditReader,
    _chained: ChainedFirst,
    filters: Filters,
    fmt: Annotated[ExportFormat, Query(alias="format", description="jsonl or csv.")] = "jsonl",
    from_seq: FromSeq = None,
    to_seq: ToSeq = None,
):
    # checked here: once the body streams, an error can no longer be a problem+json answer
    verification.check_seq_range(from_seq, to_seq)
    body = export.stream_export(
        fmt,
        tenant_id=caller.tenant_id,
        **filters.values,
        from_seq=from_seq,
        to_seq=to_seq,
    )
    headers = {"Content-Disposition": f'attachment; filename="audit-events.{fmt}"'}
    return StreamingResponse(body, media_type=export.MEDIA_TYPES[fmt], headers=headers)
