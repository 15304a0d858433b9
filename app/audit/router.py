from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import repository
from app.audit.schemas import AuditEventOut
from app.core.deps import SessionDep
from app.core.pagination import Page, PageSize, PageToken, decode_token, page_of

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


@router.get("", response_model=Page[AuditEventOut], summary="Search the audit trail (oldest first)")
def list_audit_events(
    db: SessionDep,
    model_id: uuid.UUID | None = None,
    forget_request_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[datetime | None, Query(description="Inclusive lower bound on occurred_at.")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive upper bound on occurred_at.")] = None,
    page_size: PageSize = 50,
    page_token: PageToken = None,
):
    cursor = decode_token(page_token)
    rows = repository.search(
        db,
        model_id=model_id,
        forget_request_id=forget_request_id,
        job_id=job_id,
        action=action,
        since=since,
        until=until,
        after_seq=cursor[0] if cursor else None,
        limit=page_size + 1,
    )
    return page_of(rows, page_size, key=lambda r: [r.seq], convert=AuditEventOut.model_validate)
