from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter

from app.auth.deps import Admin
from app.core.deps import SessionDep
from app.core.errors import PROBLEM_CONTENT_TYPE, ProblemError
from app.jobs import repository as jobs_repo
from app.settings import get_settings
from app.worker_status.schemas import WorkersOut
from app.worker_status.store import get_heartbeat_store, ttl_seconds

router = APIRouter(prefix="/v1/workers", tags=["operations"])
log = logging.getLogger(__name__)


@router.get(
    "",
    response_model=WorkersOut,
    summary="Live workers (by heartbeat) and the job each is running (admin)",
    description="Workers are shared by every tenant: a worker running another tenant's job shows "
    "`busy: true` without the job, and no worker shows its host or process id.",
    responses={503: {"description": "Redis is unreachable", "content": {PROBLEM_CONTENT_TYPE: {}}}},
)
def list_workers(db: SessionDep, caller: Admin):
    try:
        beats = get_heartbeat_store().alive()
    except Exception as exc:
        log.warning("heartbeat store unreachable: %s", type(exc).__name__)
        raise ProblemError(503, "service-unavailable", "Heartbeats unavailable", "Redis is unreachable") from exc
    running = [uuid.UUID(str(b["current_job"]["id"])) for b in beats if b.get("current_job")]
    tenants = jobs_repo.tenants_of(db, running)
    for beat in beats:
        beat["busy"] = bool(beat.get("current_job"))
        if beat["busy"] and tenants.get(uuid.UUID(str(beat["current_job"]["id"]))) != caller.tenant_id:
            beat["current_job"] = None  # another tenant's job: not even its id
    return {
        "items": sorted(beats, key=lambda b: b["name"]),
        "heartbeat_interval_s": get_settings().worker_heartbeat_interval_s,
        "expires_after_s": ttl_seconds(),
    }
