from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from app.db import batch
from app.db.batch import Rows
from app.forget_requests.tables import DISCHARGED_STATES, ForgetRequest, IdempotencyKey


def get(db: Session, forget_request_id: uuid.UUID) -> ForgetRequest | None:
    return db.get(ForgetRequest, forget_request_id)


def get_by_client_id(db: Session, tenant_id: str, request_id: str) -> ForgetRequest | None:
    q = select(ForgetRequest).where(ForgetRequest.tenant_id == tenant_id, ForgetRequest.request_id == request_id)
    return db.scalar(q)


def add_together(db: Session, objects: list, *more: Rows) -> None:
    """New rows (transient ORM objects, and ``more`` as table rows) in one statement: see app.db.batch."""
    batch.insert_together(db, [*(batch.row_of(obj) for obj in objects), *more])


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


def get_idempotency(db: Session, tenant_id: str, key: str) -> Row[Any] | None:
    """The answer stored under the key (body_sha256, status_code, response, location), or None:
    every submit asks, so a Core statement (app.db.rows)."""
    return db.execute(_IDEMPOTENCY, {"tenant_id": tenant_id, "key": key}).first()


_KEYS = IdempotencyKey.__table__
_IDEMPOTENCY = select(_KEYS.c.body_sha256, _KEYS.c.status_code, _KEYS.c.response, _KEYS.c.location).where(
    _KEYS.c.tenant_id == bindparam("tenant_id"), _KEYS.c.key == bindparam("key")
)


def idempotency_of_request(db: Session, forget_request_id: uuid.UUID) -> IdempotencyKey | None:
    return db.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.forget_request_id == forget_request_id)
        .order_by(IdempotencyKey.created_at)
        .limit(1)
    )
