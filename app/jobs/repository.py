from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import exists, insert, select, update
from sqlalchemy.orm import Session

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


def jobs_of_request_with_request_ids(db: Session, forget_request_id: uuid.UUID) -> list[tuple[Job, list[uuid.UUID]]]:
    """The request's jobs, each with every forget request it serves: one query (a poll's hot path)."""
    mine = select(JobRequest.job_id).where(JobRequest.forget_request_id == forget_request_id)
    rows = db.execute(
        select(Job, JobRequest.forget_request_id)
        .join(JobRequest, JobRequest.job_id == Job.id)
        .where(Job.id.in_(mine))
        .order_by(Job.id, JobRequest.forget_request_id)
    )
    grouped: dict[uuid.UUID, tuple[Job, list[uuid.UUID]]] = {}
    for job, rid in rows:
        grouped.setdefault(job.id, (job, []))[1].append(rid)
    return list(grouped.values())


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
    if rows:
        db.execute(insert(JobBatch), rows)


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
    db: Session, *, model_id: uuid.UUID | None, state: str | None, after: uuid.UUID | None, limit: int
) -> list[Job]:
    q = select(Job)
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
