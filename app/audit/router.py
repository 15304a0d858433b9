from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from app.audit import export, heads, repository, sequencer, verification
from app.audit.export import ExportFormat
from app.audit.schemas import AuditEventOut, ChainVerificationOut, SignedChainHead
from app.auth.deps import Admin, AuditReader
from app.core.deps import SessionDep
from app.core.errors import Conflict, Invalid, pydantic_errors
from app.core.pagination import Page, PageSize, PageToken, decode_int_token, page_of
from app.core.validation import INSTANT_RULE, INT64_MAX, Instant, PrintableText
from app.db import commit

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])
heads_router = APIRouter(prefix="/v1/audit/heads", tags=["audit"])


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
        since: Annotated[
            Instant | None, Query(description="Inclusive lower bound on occurred_at. " + INSTANT_RULE)
        ] = None,
        until: Annotated[
            Instant | None, Query(description="Exclusive upper bound on occurred_at. " + INSTANT_RULE)
        ] = None,
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
    head: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="A signed chain head you kept (the JSON of an item of GET /v1/audit/heads): the chain "
            "is checked against it as well as against the heads the service stored.",
        ),
    ] = None,
):
    supplied = [] if head is None else [_parse_head(head)]
    return verification.verify_chain(db, from_seq=from_seq, to_seq=to_seq, supplied_heads=supplied)


def _parse_head(text: str) -> dict:
    """The document as sent (its exact content is what was signed), once its shape is checked."""
    try:
        document = json.loads(text)
        SignedChainHead.model_validate(document)
    except ValidationError as exc:
        errors = pydantic_errors(exc.errors(), ("query", "head"))
        raise Invalid("head is not a signed chain head.", errors=errors) from None
    except ValueError:
        raise Invalid("head is not JSON: pass a signed chain head as GET /v1/audit/heads lists it.") from None
    return document


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "Every column of each matching event, oldest first; hashes re-checkable offline. "
            "Without filters other than from_seq/to_seq, another tenant's events in the range are link-only "
            "records (seq, prev_hash, hash, redacted), so the chain has no gap.",
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


@heads_router.get("", response_model=Page[SignedChainHead], summary="Signed chain heads, oldest first")
def list_chain_heads(db: SessionDep, caller: AuditReader, page_size: PageSize = 50, page_token: PageToken = None):
    """Every head the service signed; they hold only seqs and hashes, so every tenant sees all of them."""
    cursor = decode_int_token(page_token, 1, INT64_MAX)
    rows = repository.heads(db, after_id=cursor[0] if cursor else None, limit=page_size + 1)
    return page_of(rows, page_size, key=lambda r: [r.id], convert=heads.document)


@heads_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SignedChainHead,
    summary="Sign the chain's head now (admin)",
    description="Chains what waits, then signs the last event's seq and hash (or answers the latest head "
    "again when it already names that event).",
)
def sign_chain_head(db: SessionDep, caller: Admin, response: Response):
    sequencer.flush()
    row = heads.sign_head(db)
    if row is None:
        raise Conflict("the audit chain is empty: there is no head to sign.")
    commit(db)
    return heads.document(row)
