"""The request boundary of auth: ``Authorization: Bearer <key>`` -> a :class:`Principal` with the
scopes an endpoint needs, or a 401/403 problem.

Endpoints declare what they need with the aliases below, e.g. ``caller: RequestsWriter``; the
principal's tenant then scopes every query. Keys are looked up once and remembered for
``api_key_cache_s`` seconds per process: the hot endpoints (submit, poll) would otherwise pay one
more database round trip and one more thread hop per request. So a revoked key keeps working on
other API processes for at most that long (on the process that revoked it, not at all).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from starlette.concurrency import run_in_threadpool

from app.auth import service
from app.auth.service import Principal
from app.core.errors import ProblemError
from app.db.session import new_read_session
from app.settings import get_settings

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer unl_...`")

_cache: dict[str, tuple[float, Principal | None]] = {}
_CACHE_MAX = 10_000


def forget_cached(secret_sha256: str) -> None:
    """Drop a remembered key (after revoking it)."""
    _cache.pop(secret_sha256, None)


def _lookup(secret: str) -> Principal | None:
    session = new_read_session()
    try:
        return service.authenticate(session, secret)
    finally:
        session.close()


async def _principal(secret: str) -> Principal | None:
    digest = service.secret_hash(secret)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    principal = await run_in_threadpool(_lookup, secret)
    if len(_cache) >= _CACHE_MAX:  # unknown keys are remembered too; bound what a key-guesser costs
        _cache.clear()
    _cache[digest] = (now + get_settings().api_key_cache_s, principal)
    return principal


def _unauthenticated(detail: str) -> ProblemError:
    error = ProblemError(401, "unauthenticated", "Authentication required", detail)
    error.headers = {"WWW-Authenticate": 'Bearer realm="unlearnd"'}
    return error


async def authorize(
    required: SecurityScopes,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise _unauthenticated("Send an API key as `Authorization: Bearer <key>`.")
    principal = await _principal(credentials.credentials)
    if principal is None:
        raise _unauthenticated("The API key is unknown or revoked.")
    missing = [s for s in required.scopes if not principal.may(s)]
    if missing:
        raise ProblemError(
            403,
            "insufficient-scope",
            "Insufficient scope",
            f"This operation needs the scope(s) {', '.join(missing)}; "
            f"the key has {', '.join(sorted(principal.scopes))}.",
            required_scopes=missing,
        )
    return principal


RequestsWriter = Annotated[Principal, Security(authorize, scopes=["requests:write"])]
RequestsReader = Annotated[Principal, Security(authorize, scopes=["requests:read"])]
ModelsWriter = Annotated[Principal, Security(authorize, scopes=["models:write"])]
ModelsReader = Annotated[Principal, Security(authorize, scopes=["models:read"])]
AuditReader = Annotated[Principal, Security(authorize, scopes=["audit:read"])]
Admin = Annotated[Principal, Security(authorize, scopes=["admin"])]
