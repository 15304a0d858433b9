from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import rows
from app.db.rows import Snapshot
from app.forget_requests.tables import ForgetRequest
from app.jobs.states import ACTIVE, QUEUED
from app.jobs.tables import Job, JobBatch, JobRequest


def get(db: Session, job_id: uuid.UUID) -> Job | None:
    return db.get(Job, job_id)


def add(db: Session, job: Job, request_ids: list[uuid.UUID]) -> None:
    db.add(job)
    db.add_all(JobRequest(job_id=job.id, forget_request_id=rid) for rid in request_ids)
    db.flush()  # one flush: the unit of work orders the INSERTs by foreign key


def compare_and_set(db: Session, job_id: uuid.UUID, expected_state: str, values: dict[str, Any]) -> bool:
    """UPDATE ... WHERE state = expected: exactly one of several racing writers wins."""
    result = db.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == expected_state)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def share_queued_unlearn_jobs(db: Session, model_id: uuid.UUID, method: str) -> list[tuple[Snapshot, int, str | None]]:
    """The model's QUEUED unlearn jobs of this method, oldest first, each with how many requests it
    serves and its first request's scope type, share-locked until this transaction ends; the jobs
    as read-only objects (app.db.rows: a submit's hot path).

    Joiners share the lock, so they never wait for each other; a worker's claim (an UPDATE of the
    row) waits until every joiner holding it has committed, so its run includes them. A job whose
    claim is under way is skipped: it will not be QUEUED when the claim commits (why: docs/decisions/post-path.md).
    """
    found = []
    for row in db.execute(_SHARE_QUEUED, {"model_id": model_id, "method": method}):
        (job,) = rows.split(row, _JOB)
        found.append((job, row[-2], row[-1]))
    return found


def try_lock_queue(db: Session, model_id: uuid.UUID) -> bool:
    """The model's queue lock, until this transaction ends, if no other transaction holds it: taken
    by the submit that queues a new job (see app.jobs.coalescing). SQLite: writers are serialised
    already, so always True."""
    if db.get_bind().dialect.name != "postgresql":
        return True
    return bool(db.scalar(text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), _queue_key(model_id)))


def wait_for_queue(db: Session, model_id: uuid.UUID) -> None:
    """Wait until the submit holding the model's queue lock has committed (a shared hold, until this
    transaction ends: the waiters do not wait for each other)."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock_shared(hashtextextended(:key, 0))"), _queue_key(model_id))


def _queue_key(model_id: uuid.UUID) -> dict[str, str]:
    return {"key": f"queue:{model_id}"}


def oldest_queued_of_model(db: Session, model_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    """The model's oldest QUEUED job: its id and device class (the queue it goes to)."""
    q = select(Job.id, Job.device_class).where(Job.model_id == model_id, Job.state == QUEUED).order_by(Job.id)
    row = db.execute(q.limit(1)).first()
    return None if row is None else (row.id, row.device_class)


def lock_job(db: Session, job_id: uuid.UUID) -> Job:
    return db.scalars(
        select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
    ).one()


def remove_request(db: Session, job_id: uuid.UUID, forget_request_id: uuid.UUID) -> None:
    db.execute(delete(JobRequest).where(JobRequest.job_id == job_id, JobRequest.forget_request_id == forget_request_id))


def request_ids_of(db: Session, job_id: uuid.UUID) -> list[uuid.UUID]:
    return list(db.scalars(select(JobRequest.forget_request_id).where(JobRequest.job_id == job_id)))


def jobs_of_request(db: Session, forget_request_id: uuid.UUID) -> list[Job]:
    q = (
        select(Job)
        .join(JobRequest, JobRequest.job_id == Job.id)
        .where(JobRequest.forget_request_id == forget_request_id)
        .order_by(Job.id)
    )
    return list(db.scalars(q))


def _served():
    """How many requests the row's job serves (a correlated count)."""
    return (
        select(func.count()).select_from(JobRequest).where(JobRequest.job_id == Job.id).correlate(Job).scalar_subquery()
    )


def jobs_of_request_with_counts(db: Session, forget_request_id: uuid.UUID) -> list[tuple[Job, int]]:
    """The request's jobs, each with how many requests it serves: one query."""
    q = (
        select(Job, _served())
        .join(JobRequest, JobRequest.job_id == Job.id)
        .where(JobRequest.forget_request_id == forget_request_id)
        .order_by(Job.id)
    )
    return [(job, count) for job, count in db.execute(q)]


def request_with_jobs(db: Session, forget_request_id: uuid.UUID) -> tuple[Snapshot, list[tuple[Snapshot, int]]] | None:
    """The request and its jobs, each with how many requests it serves, in one query (a poll's hot
    path: two thirds of the requests under the service benchmark's load), as read-only objects
    (app.db.rows: no ORM loading)."""
    found = db.execute(_REQUEST_WITH_JOBS, {"id": forget_request_id}).all()
    if not found:
        return None
    split = [(*rows.split(row, _FR, _JOB), row[-1]) for row in found]
    return split[0][0], [(job, served) for _, job, served in split if job is not None]


_FR, _JOB, _LINK = ForgetRequest.__table__, Job.__table__, JobRequest.__table__
_REQUEST_WITH_JOBS = (
    select(
        _FR,
        _JOB,
        select(func.count()).select_from(_LINK).where(_LINK.c.job_id == _JOB.c.id).correlate(_JOB).scalar_subquery(),
    )
    .outerjoin(_LINK, _LINK.c.forget_request_id == _FR.c.id)
    .outerjoin(_JOB, _JOB.c.id == _LINK.c.job_id)
    .where(_FR.c.id == bindparam("id"))
    .order_by(_JOB.c.id)
)
_SHARE_QUEUED = (
    select(
        _JOB,
        select(func.count()).select_from(_LINK).where(_LINK.c.job_id == _JOB.c.id).correlate(_JOB).scalar_subquery(),
        select(_FR.c.scope_type)
        .join(_LINK, _LINK.c.forget_request_id == _FR.c.id)
        .where(_LINK.c.job_id == _JOB.c.id)
        .order_by(_FR.c.id)
        .limit(1)
        .correlate(_JOB)
        .scalar_subquery(),
    )
    .where(
        _JOB.c.model_id == bindparam("model_id"),
        _JOB.c.kind == "unlearn",
        _JOB.c.state == QUEUED,
        _JOB.c.method == bindparam("method"),
    )
    .order_by(_JOB.c.id)
    .with_for_update(read=True, of=_JOB, skip_locked=True)
)


def request_count(db: Session, job_id: uuid.UUID) -> int:
    return db.scalar(select(func.count()).select_from(JobRequest).where(JobRequest.job_id == job_id)) or 0


def model_has_active_job(db: Session, model_id: uuid.UUID, other_than: uuid.UUID) -> bool:
    return (
        db.scalar(select(exists().where(Job.model_id == model_id, Job.id != other_than, Job.state.in_(ACTIVE))))
        or False
    )


def queued_before(db: Session, cutoff: datetime, limit: int = 500) -> list[Job]:
    q = select(Job).where(Job.state == QUEUED, Job.enqueued_at < cutoff).order_by(Job.id).limit(limit)
    return list(db.scalars(q))


def lease_expired(db: Session, now: datetime, limit: int = 500) -> list[Job]:
    q = select(Job).where(Job.state.in_(ACTIVE), Job.lease_expires_at < now).order_by(Job.id).limit(limit)
    return list(db.scalars(q))


def add_batches(db: Session, rows: list[dict[str, Any]]) -> None:
    """Rows already there are skipped: a flush whose commit went through but whose answer was lost
    (the database restarted) is retried, and must not fail the job on its own rows."""
    if rows:
        dialect_insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        db.execute(dialect_insert(JobBatch).on_conflict_do_nothing(), rows)


def list_batches(
    db: Session, job_id: uuid.UUID, *, attempt: int | None, after: tuple[int, int] | None, limit: int
) -> list[JobBatch]:
    q = select(JobBatch).where(JobBatch.job_id == job_id)
    if attempt is not None:
        q = q.where(JobBatch.attempt == attempt)
    if after is not None:
        a, s = after
        q = q.where((JobBatch.attempt > a) | ((JobBatch.attempt == a) & (JobBatch.step > s)))
    return list(db.scalars(q.order_by(JobBatch.attempt, JobBatch.step).limit(limit)))


def list_jobs(
    db: Session, *, tenant_id: str, model_id: uuid.UUID | None, state: str | None, after: uuid.UUID | None, limit: int
) -> list[Job]:
    q = select(Job).where(Job.tenant_id == tenant_id)
    if model_id:
        q = q.where(Job.model_id == model_id)
    if state:
        q = q.where(Job.state == state)
    if after:
        q = q.where(Job.id > after)
    return list(db.scalars(q.order_by(Job.id).limit(limit)))


def update_if_owner(db: Session, job_id: uuid.UUID, attempt: int, values: dict[str, Any]) -> str:
    """Update the job only while this attempt owns it; return its state either way."""
    db.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.state.in_(ACTIVE))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    row = db.execute(select(Job.state, Job.attempt).where(Job.id == job_id)).one()
    return row.state if row.attempt == attempt else "LOST"


def train_job_id(db: Session, model_id: uuid.UUID) -> uuid.UUID | None:
    return db.scalar(
        select(Job.id).where(Job.model_id == model_id, Job.kind == "train").order_by(Job.id.desc()).limit(1)
    )


def tenants_of(db: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not job_ids:
        return {}
    return dict(db.execute(select(Job.id, Job.tenant_id).where(Job.id.in_(job_ids))).tuples().all())


def last_from_scratch_start(db: Session, model_id: uuid.UUID) -> datetime | None:
    """When the succeeded job that trained the model's weights from scratch (its first training, or
    a later retrain) started: every sample tombstoned before then was left out of it."""
    q = (
        select(Job.started_at)
        .where(Job.model_id == model_id, Job.state == "SUCCEEDED", (Job.kind == "train") | (Job.method == "retrain"))
        .order_by(Job.started_at.desc())
        .limit(1)
    )
    return db.scalar(q)


def active_started_before(db: Session, cutoff: datetime, limit: int = 500) -> list[Job]:
    """Jobs holding a worker since before ``cutoff`` (few rows: at most one per model)."""
    q = select(Job).where(Job.state.in_(ACTIVE), Job.started_at < cutoff).order_by(Job.id).limit(limit)
    return list(db.scalars(q))
