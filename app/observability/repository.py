"""The aggregates /metrics reads: a handful of GROUP BY queries, no rows.

Jobs and audit events are never deleted, so counts over finished jobs only ever grow: they are
Prometheus counters computed from the source of truth, the same on every API replica and after a
restart, and the worker needs no metrics endpoint of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, case, func, select
from sqlalchemy.orm import Session

from app.audit.tables import AuditEvent
from app.jobs.states import ACTIVE, FAILED, QUEUED, TERMINAL
from app.jobs.tables import Job


def _seconds(db: Session, start, end):
    if db.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def unfinished_jobs(db: Session) -> Sequence[Row]:
    """(state, kind, method, n) of QUEUED and running jobs (the state index bounds the scan)."""
    q = (
        select(Job.state, Job.kind, Job.method, func.count())
        .where(Job.state.in_((QUEUED, *ACTIVE)))
        .group_by(Job.state, Job.kind, Job.method)
    )
    return db.execute(q).all()


def finished_durations(db: Session, bounds: Sequence[float]) -> Sequence[Row]:
    """(kind, method, state, count, sum, n<=b for each bound) of finished jobs that ran.

    The duration is of the last attempt (``started_at`` is set at each claim) to its end; jobs that
    never started (cancelled while QUEUED, refused at claim) have none.
    """
    seconds = _seconds(db, Job.started_at, Job.finished_at)
    buckets = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds]
    q = (
        select(Job.kind, Job.method, Job.state, func.count(), func.coalesce(func.sum(seconds), 0.0), *buckets)
        .where(Job.state.in_(TERMINAL), Job.started_at.is_not(None), Job.finished_at.is_not(None))
        .group_by(Job.kind, Job.method, Job.state)
    )
    return db.execute(q).all()


def failures(db: Session) -> Sequence[Row]:
    """(kind, method, problem type, n) of FAILED jobs."""
    problem_type = Job.error["type"].as_string()
    q = (
        select(Job.kind, Job.method, problem_type, func.count())
        .where(Job.state == FAILED)
        .group_by(Job.kind, Job.method, problem_type)
    )
    return db.execute(q).all()


def requeues(db: Session) -> Sequence[Row]:
    """(reason, n) of lost-worker requeues, one per job attempt (an event is written per request the
    job serves, so events are collapsed on job and attempt first)."""
    per_attempt = (
        select(
            AuditEvent.job_id,
            AuditEvent.payload["attempt"].as_string().label("attempt"),
            AuditEvent.payload["reason"].as_string().label("reason"),
        )
        .where(AuditEvent.action == "job.requeued")
        .distinct()
        .subquery()
    )
    return db.execute(select(per_attempt.c.reason, func.count()).group_by(per_attempt.c.reason)).all()
