"""Coalescing: forget requests for one model that arrive while an unlearn job of the same method,
params, verification policy and scope type is still QUEUED join that job instead of queueing a run of their own.

The worker reads the job's requests when it starts the job and unlearns the union of their scopes
in one run (workers/runner/inputs.py), so 100 requests that arrive while a job runs cost one more
run, not 100. Every request keeps its own record, audit events and certificate: the job's state
changes are recorded once per request it serves, and its success tombstones each request's scope.

The race with a worker starting the job is settled by a row lock: joining share-locks the QUEUED
job (SELECT ... FOR SHARE; joiners do not wait for each other) and the worker's claim is an UPDATE
of the same row, so either the join commits first and the run includes the request, or the claim
has the row and the join passes over it (SKIP LOCKED: it is no longer QUEUED once the claim
commits) and a new job is queued instead, under the model's queue lock (see the repository).
Leaving locks the row exclusively (see :func:`leave`). Concurrent joiners count the requests
before each other has committed, so ``requests_served`` in a join's answer and audit event is what
that request saw, and a job may pass ``coalesce_max_requests`` by as many requests as joined it at
the same instant.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.errors import Conflict
from app.db.rows import Snapshot
from app.db.types import utcnow
from app.forget_requests import repository as requests_repo
from app.forget_requests.tables import ForgetRequest
from app.jobs import repository
from app.jobs.states import CANCELLED, QUEUED
from app.jobs.tables import Job
from app.settings import get_settings


def join_queued(db: Session, *, model: Snapshot, fr: ForgetRequest, actor: str) -> tuple[Snapshot, int] | None:
    """The QUEUED job ``fr`` joins, with how many requests it serves now, or None when there is none
    to join: the caller queues one. The caller writes ``fr``'s link to the job (a JobRequest) with
    ``fr`` itself, in the same transaction (app.forget_requests.service writes them in one statement).

    Submits that find nothing to join would each queue a job of their own (a burst of 100 requests
    became 11 runs, not 2), so the model's queue lock picks one of them to queue it; the others wait
    for that one's commit and join its job. If its job was claimed before they looked (the worker was
    idle), each of them queues one: at worst a run more, never a request lost.
    """
    cap = get_settings().coalesce_max_requests
    if cap == 0:
        return None
    found = _joinable(db, model, fr, cap)
    if found is None:
        if not repository.try_lock_queue(db, model.id):
            repository.wait_for_queue(db, model.id)
        found = _joinable(db, model, fr, cap)  # one queued while this submit looked?
        if found is None:
            return None
    job, served = found
    _record(db, job, fr, "job.request_joined", actor, requests=served + 1)
    return job, served + 1


def _joinable(db: Session, model: Snapshot, fr: ForgetRequest, cap: int) -> tuple[Snapshot, int] | None:
    """The oldest QUEUED job ``fr`` may join (share-locked), with how many requests it serves: the
    same method, params and verification policy (one run is verified once)."""
    for job, served, first_scope in repository.share_queued_unlearn_jobs(db, model.id, fr.method):
        if job.params != fr.params or first_scope is None or served >= cap:
            continue
        if (job.verification, job.on_verification_failure) != (fr.verification, fr.on_verification_failure):
            continue
        if first_scope != fr.scope_type:
            continue  # one run unlearns one kind of scope
        return job, served
    return None


def leave(db: Session, job: Job, fr: ForgetRequest, *, actor: str) -> None:
    """Cancel one request of a job that serves several: it leaves the job while the job is QUEUED
    (the others still run); once the job has started its inputs are fixed, so that is a 409."""
    job = repository.lock_job(db, job.id)
    if job.state != QUEUED:
        raise Conflict(
            f"forget request {fr.id} shares job {job.id} with other requests and that job is {job.state}: "
            "it can no longer leave it (cancel the job itself to stop every request it serves)",
            slug="job-not-cancellable",
            title="Shared job already started",
            state=job.state,
            job_id=str(job.id),
        )
    repository.remove_request(db, job.id, fr.id)
    requests_repo.set_state(db, [fr.id], CANCELLED, utcnow())
    _record(db, job, fr, "job.request_left", actor, requests=repository.request_count(db, job.id))


def _record(db: Session, job: Job | Snapshot, fr: ForgetRequest, action: str, actor: str, *, requests: int) -> None:
    audit.record(
        db,
        action=action,
        actor=actor,
        tenant_id=job.tenant_id,
        entity_type="job",
        entity_id=job.id,
        model_id=job.model_id,
        forget_request_id=fr.id,
        job_id=job.id,
        payload={"state": job.state, "requests_served": requests, "method": job.method},
    )
