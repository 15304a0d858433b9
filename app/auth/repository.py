from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.tables import ApiKey


def add(db: Session, key: ApiKey) -> None:
    db.add(key)
    db.flush()


def by_secret_hash(db: Session, secret_sha256: str) -> ApiKey | None:
    return db.scalar(select(ApiKey).where(ApiKey.secret_sha256 == secret_sha256))


def get_in_tenant(db: Session, key_id: uuid.UUID, tenant_id: str) -> ApiKey | None:
    return db.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id))


def list_keys(db: Session, tenant_id: str, *, after: uuid.UUID | None, limit: int) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.id).limit(limit)
    if after is not None:
        q = q.where(ApiKey.id > after)
    return list(db.scalars(q))


def lock_active_admins(db: Session, tenant_id: str) -> list[uuid.UUID]:
    """The ids of the tenant's active admin keys, locked until commit: two revokes of its last two
    admin keys run one after the other, and the second sees the first's."""
    q = (
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.id)
        .with_for_update()
    )
    return [k.id for k in db.scalars(q) if "admin" in k.scopes]


def active_admin_exists(db: Session, tenant_id: str) -> bool:
    keys = db.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None)))
    return any("admin" in k.scopes for k in keys)


def active_named(db: Session, tenant_id: str, name: str) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.name == name, ApiKey.revoked_at.is_(None))
    return list(db.scalars(q))
