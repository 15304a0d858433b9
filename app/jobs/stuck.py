"""Which running jobs have lost their worker: the stuck-job detector of the reconcile pass.

Two signals, either is enough:
- the job's lease expired: the worker (its pool child) stopped renewing it, or
- the worker node's heartbeat is gone: the whole node died. That is noticed after three heartbeat
  intervals (30 s by default) instead of a whole lease (120 s).
A job claimed less than a heartbeat lifetime ago is never judged by its heartbeat: its worker may
not have written its first beat yet. When the heartbeat store is unreachable, or is the embedded
mode's in-process one (another process cannot see it), only leases count: a missing beat must mean
a lost worker, never a lost Redis.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.jobs import repository
from app.jobs.tables import Job
from app.worker_status.store import get_heartbeat_store, ttl_seconds

LEASE_EXPIRED = "worker lost: lease expired"
NO_HEARTBEAT = "worker lost: no heartbeat"
log = logging.getLogger(__name__)


def find_stuck(db: Session, now: datetime) -> list[tuple[Job, str]]:
    stuck = [(job, LEASE_EXPIRED) for job in repository.lease_expired(db, now)]
    store = get_heartbeat_store()
    if not store.shared:
        return stuck
    try:
        alive = {beat["name"] for beat in store.alive()}
    except Exception as exc:
        log.warning("heartbeats unreadable (%s): judging running jobs by their lease only", type(exc).__name__)
        return stuck
    seen = {job.id for job, _ in stuck}
    for job in repository.active_started_before(db, now - timedelta(seconds=ttl_seconds())):
        if job.id not in seen and job.worker not in alive:
            stuck.append((job, NO_HEARTBEAT))
    return stuck


def idle_queues() -> set[str]:
    """The queues that a worker beating now with no job consumes (none when the heartbeats cannot be
    read): a job re-sent while every worker of its queue was busy or gone was not refused by one, so
    that send does not count towards the cap (housekeeping runs beside a long job now, and counted
    the sends it waited through; an idle cpu worker says nothing about a job of the gpu queue)."""
    try:
        beats = get_heartbeat_store().alive()
    except Exception as exc:
        log.warning("heartbeats unreadable (%s): re-sends are not counted", type(exc).__name__)
        return set()
    return {queue for beat in beats if beat.get("current_job") is None for queue in beat.get("queues", [])}
