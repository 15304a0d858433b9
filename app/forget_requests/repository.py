from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.forget_requests.tables import DISCHARGED_STATES, ForgetRequest, IdempotencyKey


def get(db: Session, forget_request_id: uuid.UUID) -> ForgetRequest | None:
    return db.get(ForgetRequest, forget_request_id)


def get_by_client_id(db: Session, tenant_id: str, request_id: str) -> ForgetRequest | None:
    q = select(ForgetRequest).where(ForgetRequest.tenant_id == tenant_id, ForgetRequest.request_id == request_id)
    return db.scalar(q)


def succeeded_of_model(db: Session, model_id: uuid.UUID) -> list[ForgetRequest]:
    q = select(ForgetRequest).where(ForgetRequest.model_id == model_id, ForgetRequest.state == "SUCCEEDED")
    return list(db.scalars(q))


def set_state(db: Session, ids: list[uuid.UUID], state: str, now: datetime) -> None:
    if ids:
        db.execute(
            update(ForgetRequest)
            .where(ForgetRequest.id.in_(ids))
            .values(state=state, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )


def list_requests(
    db: Session,
    *,
    tenant_id: str,
    model_id: uuid.UUID | None,
    state: str | None,
    overdue_at: datetime | None,
    due_by: datetime | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[ForgetRequest]:
    """``overdue_at``: only requests past their deadline at that instant and not discharged;
    ``due_by``: only requests due at or before that instant."""
    q = select(ForgetRequest).where(ForgetRequest.tenant_id == tenant_id).order_by(ForgetRequest.id).limit(limit)
    if overdue_at:
        q = q.where(ForgetRequest.due_at < overdue_at, ForgetRequest.state.not_in(DISCHARGED_STATES))
    if due_by:
        q = q.where(ForgetRequest.due_at <= due_by)
    if model_id:
        q = q.where(ForgetRequest.model_id == model_id)
    if state:
        q = q.where(ForgetRequest.state == state)
    if after:
        q = q.where(ForgetRequest.id > after)
    return list(db.scalars(q))


def get_idempotency(db: Session, tenant_id: str, key: str) -> IdempotencyKey | None:
    return db.get(IdempotencyKey, (tenant_id, key))


def idempotency_of_request(db: Session, forget_request_id: uuid.UUID) -> IdempotencyKey | None:
    return db.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.forget_request_id == forget_request_id)
        .order_by(IdempotencyKey.created_at)
        .limit(1)
    )
