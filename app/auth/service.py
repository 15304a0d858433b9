"""Creating, revoking and checking API keys.

A key is ``unl_`` + 43 URL-safe characters (256 random bits). Only its sha256 is stored; the secret
is returned once, when the key is created. Each key belongs to one tenant and sees only that
tenant's datasets, models, requests, jobs and audit events. Creating and revoking a key are audit
events (with the key's id, name, prefix and scopes, never its secret).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth import repository
from app.auth.scopes import ADMIN, grants
from app.auth.tables import ApiKey
from app.core.errors import Conflict, NotFound
from app.core.hashing import sha256_hex
from app.core.ids import uuid7
from app.db.types import utcnow

TOKEN_PREFIX = "unl_"


@dataclass(frozen=True)
class Principal:
    """The caller of one request, as its API key describes it."""

    key_id: uuid.UUID
    tenant_id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """How audit events name the caller: the key, never a person."""
        return f"api-key:{self.key_id}"

    def may(self, scope: str) -> bool:
        return grants(self.scopes, scope)


def secret_hash(secret: str) -> str:
    return sha256_hex(secret)


def create_key(db: Session, *, tenant_id: str, name: str, scopes: list[str], actor: str) -> tuple[ApiKey, str]:
    """A new key and its secret (the only time the secret exists outside the caller's hands)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=uuid7(),
        tenant_id=tenant_id,
        name=name,
        prefix=secret[:12],
        secret_sha256=secret_hash(secret),
        scopes=sorted(set(scopes)),
        created_at=utcnow(),
        created_by=actor,
    )
    repository.add(db, key)
    _record(db, key, "api_key.created", actor)
    return key, secret


def get_key(db: Session, key_id: uuid.UUID, *, tenant_id: str) -> ApiKey:
    key = repository.get_in_tenant(db, key_id, tenant_id)
    if key is None:
        raise NotFound("API key", key_id)
    return key


def revoke_key(db: Session, key: ApiKey, *, actor: str) -> ApiKey:
    """Revoked at once in this process; other API processes stop accepting it within
    ``api_key_cache_s`` (see app.auth.deps). Revoking twice changes nothing. 409 when it is the
    tenant's last active admin key: no key could then manage the tenant's keys."""
    last_admin = key.revoked_at is None and ADMIN in key.scopes
    if last_admin and repository.lock_active_admins(db, key.tenant_id) == [key.id]:
        raise Conflict(
            "this is the tenant's last active admin key: revoking it would leave no key that can manage "
            "the tenant's keys; create another admin key first",
            title="Last admin key",
        )
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.flush()
        _record(db, key, "api_key.revoked", actor)
    return key


def authenticate(db: Session, secret: str) -> Principal | None:
    """The principal of an active key with this secret, or None (unknown or revoked)."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    key = repository.by_secret_hash(db, secret_hash(secret))
    if key is None or key.revoked_at is not None:
        return None
    return Principal(key_id=key.id, tenant_id=key.tenant_id, scopes=frozenset(key.scopes))


def bootstrap_admin(db: Session, *, tenant_id: str, name: str, force: bool = False) -> tuple[ApiKey, str]:
    """The first admin key of a tenant (the CLI's ``bootstrap-admin``). Refuses when the tenant already
    has an active admin key, so a stray rerun does not mint another master key; ``force`` allows it."""
    if not force and repository.active_admin_exists(db, tenant_id):
        raise ValueError(f"tenant {tenant_id!r} already has an active admin key (use --force to add another)")
    return create_key(db, tenant_id=tenant_id, name=name, scopes=[ADMIN], actor="cli")


def replace_named_key(db: Session, *, tenant_id: str, name: str, scopes: list[str], actor: str) -> str:
    """Revoke the tenant's active keys of this name and create a fresh one (the embedded demo's key:
    a new secret per start, the old one stops working)."""
    olds = repository.active_named(db, tenant_id, name)
    secret = create_key(db, tenant_id=tenant_id, name=name, scopes=scopes, actor=actor)[1]  # first: it may be the admin
    for old in olds:
        revoke_key(db, old, actor=actor)
    return secret


def _record(db: Session, key: ApiKey, action: str, actor: str) -> None:
    audit.record(
        db,
        action=action,
        actor=actor,
        tenant_id=key.tenant_id,
        entity_type="api_key",
        entity_id=key.id,
        payload={"name": key.name, "prefix": key.prefix, "scopes": list(key.scopes)},
    )
