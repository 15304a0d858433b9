from __future__ import annotations

import logging

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core.errors import PROBLEM_CONTENT_TYPE, problem_body
from app.db import get_engine
from app.queue import broker_ping
from app.settings import get_settings

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", summary="Liveness: the process answers")
def healthz():
    return {"status": "ok"}


def _check_database() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_redis() -> None:
    url = get_settings().effective_redis_url
    if url:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    else:  # embedded mode: the in-memory broker
        broker_ping()


@router.get(
    "/readyz",
    summary="Readiness: Postgres (or SQLite) and Redis (or the embedded broker) answer",
    responses={503: {"description": "A dependency is down", "content": {PROBLEM_CONTENT_TYPE: {}}}},
)
def readyz():
    checks: dict[str, str] = {}
    for name, check in (("database", _check_database), ("broker", _check_redis)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # report, do not crash: that is the point of a readiness probe
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"down: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ok", "checks": checks}
    body = problem_body(503, "service-unavailable", "Not ready", "a backing service is unreachable", checks=checks)
    return JSONResponse(body, status_code=503, media_type=PROBLEM_CONTENT_TYPE)
