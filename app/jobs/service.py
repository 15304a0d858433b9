"""Job rules: creation, the single transition function, claiming, progress, cancel, reconcile.

Every transition is a compare-and-set on the job's state, mirrored onto the forget requests the job
serves, and recorded as an audit event in the same transaction.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import service as audit
from app.core.errors import Conflict, NotFound, problem_body
from app.core.ids import uuid7
from app.db import on_commit
from app.db.rows import Snapshot
from app.db.types import utcnow
from app.forget_requests import repository as requests_repo
from app.jobs import repository, stuck
from app.jobs.states import (
    CANCELLED,
    CANCELLING,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    check_transition,
)
from app.jobs.tables import Job
from app.models import repository as models_repo
from app.models.tables import Model
from app.observability import context as log_context
from app.queue import enqueue_job, job_queue
from app.settings import get_settings

log = logging.getLogger(__name__)


def get_job(db: Session, job_id: uuid.UUID, *, tenant_id: str) -> Job:
    """The job, if it is this tenant's: another tenant's is as absent as a missing one (404)."""
    job = repository.get(db, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound("job", job_id)
    return job


def job_problem(title: str, detail: str, slug: str = "job-failed", status: int = 500, **ext: Any) -> dict[str, Any]:
    """The problem object stored on a failed job (``status`` is what the failure would be over HTTP)."""
    return problem_body(status, slug, title, detail, **ext)


def device_class_for(model: Model | Snapshot) -> str:
    """The device class (queue) of a new job of ``model``: the model's device_class, or for "auto",
    cpu below UNLEARND_CPU_MAX_PARAMETERS parameters (app/settings.py says why 1 M) and gpu from
    there up, or when the size is not known (a model registered before sizes were recorded)."""
    if model.device_class != "auto":
        return model.device_class
    small = model.parameter_count is not None and model.parameter_count < get_settings().cpu_max_parameters
    return "cpu" if small else "gpu"


def create(
    db: Session,
    *,
    kind: str,
    model: Model | Snapshot,
    method: str,
    params: dict[str, Any],
    request_ids: list[uuid.UUID],
    actor: str,
    verification: dict[str, Any] | None = None,
    on_verification_failure: str | None = None,
) -> Job:
    now = utcnow()
    job = Job(
        id=uuid7(),
        tenant_id=model.tenant_id,
        kind=kind,
        model_id=model.id,
        device_class=device_class_for(model),
        state=QUEUED,
        attempt=0,
        method=method,
        params=params,
        verification=verification,
        on_verification_failure=on_verification_failure,
        progress_fraction=0.0,
        progress_step=0,
        created_at=now,
        enqueued_at=now,
        updated_at=now,
    )
    repository.add(db, job, request_ids)
    _audit(db, job, None, QUEUED, actor, request_ids, reason=None)
    on_commit(db, lambda: enqueue_job(job.id, job.device_class))
    return job


def transition(db: Session, job: Job, target: str, *, actor: str, reason: str | None = None, **values: Any) -> bool:
    """Move ``job`` to ``target`` if nobody moved it first; False if it lost the race."""
    check_transition(job.state, target)
    now = utcnow()
    values = {**values, "state": target, "updated_at": now}
    if target in TERMINAL:
        values.setdefault("finished_at", now)
    previous = job.state
    if not repository.compare_and_set(db, job.id, previous, values):
        db.refresh(job)
        return False
    for key, value in values.items():
        set_committed_value(job, key, value)
    request_ids = repository.request_ids_of(db, job.id)
    requests_repo.set_state(db, request_ids, target, now)
    _audit(db, job, previous, target, actor, request_ids, reason)
    return True


def _audit(
    db: Session,
    job: Job,
    previous: str | None,
    target: str,
    actor: str,
    request_ids: list[uuid.UUID],
    reason: str | None,
) -> None:
    payload: dict[str, Any] = {
        "from": previous,
        "to": target,
        "attempt": job.attempt,
        "kind": job.kind,
        "method": job.method,
    }
    if reason:
        payload["reason"] = reason
    if target == SUCCEEDED:
        payload["result_version"] = job.result_version
    if target == FAILED and job.error:
        payload["error_type"] = job.error.get("type")
    action = "job.requeued" if target == QUEUED and previous else f"job.{target.lower()}"
    _record_per_request(db, job, action, payload, actor, request_ids)


def _record_per_request(
    db: Session, job: Job, action: str, payload: dict[str, Any], actor: str, request_ids: list[uuid.UUID]
) -> None:
    """One event per forget request the job serves (a train job's: one without a request)."""
    for rid in request_ids or [None]:
        audit.record(
            db,
            action=action,
            actor=actor,
            tenant_id=job.tenant_id,
            entity_type="job",
            entity_id=job.id,
            model_id=job.model_id,
            forget_request_id=rid,
            job_id=job.id,
            payload=payload,
        )


class Claim(enum.Enum):
    RUN = "run"  # this worker now owns the job
    SKIP = "skip"  # not QUEUED (a duplicate delivery, cancelled, finished): nothing to do
    DEFER = "defer"  # the model is busy with another job: try again shortly
    GAVE_UP = "gave_up"  # failed for good (attempt cap, model unusable)


@dataclass
class ClaimResult:
    outcome: Claim
    job: Job | None = None


def claim(db: Session, job_id: uuid.UUID, *, worker: str) -> ClaimResult:
    """Idempotent compare-and-set start: QUEUED -> RUNNING, once, for one worker."""
    settings = get_settings()
    job = repository.get(db, job_id)
    if job is None or job.state != QUEUED:
        return ClaimResult(Claim.SKIP, job)
    actor = f"worker:{worker}"
    if job.attempt >= settings.job_max_attempts:
        fail(
            db,
            job,
            job_problem(
                "Attempt cap reached",
                f"the job was started {job.attempt} times without finishing "
                f"(cap {settings.job_max_attempts}); its last worker was lost",
            ),
            actor=actor,
        )
        return ClaimResult(Claim.GAVE_UP, job)
    if repository.model_has_active_job(db, job.model_id, job.id):
        return ClaimResult(Claim.DEFER, job)
    source_version = None
    if job.kind == "unlearn":
        model = models_repo.get(db, job.model_id)
        if model.head_version is None:
            if model.state == "TRAINING":  # its train job has not finished yet
                return ClaimResult(Claim.DEFER, job)
            fail(
                db,
                job,
                job_problem(
                    "Model not ready",
                    "the model has no trained version to unlearn from",
                    slug="model-not-ready",
                    status=409,
                ),
                actor=actor,
            )
            return ClaimResult(Claim.GAVE_UP, job)
        source_version = model.head_version
    now = utcnow()
    won = transition(
        db,
        job,
        RUNNING,
        actor=actor,
        attempt=job.attempt + 1,
        started_at=now,
        worker=worker,
        lease_expires_at=now + timedelta(seconds=settings.job_lease_seconds),
        source_version=source_version,
        progress_fraction=0.0,
        progress_step=0,
        progress_phase="starting",
        total_steps=None,
    )
    return ClaimResult(Claim.RUN if won else Claim.SKIP, job)


def record_progress(
    db: Session, job: Job, batches: list[dict[str, Any]], *, phase: str | None, step: int, total_steps: int | None
) -> str:
    """Store per-batch records, progress and a fresh lease; return the job's state now.

    Only the attempt that owns the job may write progress: a worker that lost its lease gets back
    the state that tells it to stop.
    """
    now = utcnow()
    repository.add_batches(db, [{**b, "job_id": job.id, "attempt": job.attempt, "recorded_at": now} for b in batches])
    values: dict[str, Any] = {
        "progress_step": step,
        "updated_at": now,
        "lease_expires_at": now + timedelta(seconds=get_settings().job_lease_seconds),
    }
    if phase:
        values["progress_phase"] = phase
    if total_steps:
        values["total_steps"] = total_steps
        values["progress_fraction"] = min(1.0, step / total_steps)
    return repository.update_if_owner(db, job.id, job.attempt, values)


def heartbeat(db: Session, job: Job) -> str:
    now = utcnow()
    return repository.update_if_owner(
        db,
        job.id,
        job.attempt,
        {"lease_expires_at": now + timedelta(seconds=get_settings().job_lease_seconds)},
    )


def request_cancel(db: Session, job: Job, *, actor: str) -> Job:
    if job.state == CANCELLING:
        return job
    if job.state == QUEUED and transition(db, job, CANCELLED, actor=actor, reason="cancelled before it started"):
        _after_train_job_ended(db, job, "training was cancelled")
        return job
    if job.state == RUNNING and transition(db, job, CANCELLING, actor=actor, reason="cancel requested"):
        return job
    raise Conflict(
        f"job {job.id} is {job.state}; only QUEUED or RUNNING jobs can be cancelled",
        slug="job-not-cancellable",
        title="Job cannot be cancelled",
        state=job.state,
    )


def fail(db: Session, job: Job, problem: dict[str, Any], *, actor: str, metrics: dict[str, Any] | None = None) -> bool:
    """FAILED with ``problem``; ``metrics``: what the job measured before it failed (verification)."""
    values = {"metrics": metrics} if metrics is not None else {}
    ok = transition(db, job, FAILED, actor=actor, reason=problem.get("title"), error=problem, **values)
    if ok:
        _after_train_job_ended(db, job, problem.get("detail") or "training failed")
    return ok


def fail_verification(
    db: Session, job: Job, problem: dict[str, Any], *, method: str, metrics: dict[str, Any], actor: str
) -> bool:
    """The last attempt's model failed verification and nothing may be kept: FAILED, with what was
    measured, and the attempt's ``job.verification_failed`` event."""
    if not fail(db, job, problem, actor=actor, metrics=metrics):
        return False
    payload = {"method": method, "failed_tests": problem["failed_tests"]}
    record_attempt(db, job, "job.verification_failed", payload, actor=actor)
    return True


def record_attempt(db: Session, job: Job, action: str, payload: dict[str, Any], *, actor: str) -> None:
    """An event about one of an unlearn job's method attempts (``job.verification_failed``,
    ``job.escalated``), once per request the job serves. Test statistics and method names only."""
    _record_per_request(db, job, action, payload, actor, repository.request_ids_of(db, job.id))


def escalate(db: Session, job: Job, *, attempt: dict[str, Any], next_method: str, actor: str) -> bool:
    """An attempt failed verification (or refused to run): record it and hand over to the next
    method of the plan, VERIFYING -> RUNNING. False if the job is no longer this worker's to move."""
    if attempt.get("failed_tests") is not None:
        record_attempt(
            db,
            job,
            "job.verification_failed",
            {"method": attempt["method"], "failed_tests": attempt["failed_tests"]},
            actor=actor,
        )
    reason = attempt.get("reason") or "failed verification"
    record_attempt(
        db, job, "job.escalated", {"from": attempt["method"], "to": next_method, "reason": reason}, actor=actor
    )
    if job.state == RUNNING:  # a refusal: the job never left RUNNING
        return True
    return transition(db, job, RUNNING, actor=actor, reason=f"escalated to {next_method}", progress_phase="escalate")


def finish_cancelled(db: Session, job: Job, *, actor: str, steps_done: int) -> bool:
    ok = transition(db, job, CANCELLED, actor=actor, reason=f"stopped after {steps_done} steps")
    if ok:
        _after_train_job_ended(db, job, "training was cancelled")
    return ok


def _after_train_job_ended(db: Session, job: Job, why: str) -> None:
    if job.kind == "train":
        models_repo.set_state(db, job.model_id, "FAILED")


def reconcile(db: Session, *, actor: str = "reconciler") -> dict[str, int]:
    """Re-send jobs stuck in QUEUED; take back running jobs whose worker is gone (lease expired or
    heartbeat missing, see app.jobs.stuck): requeued, or failed once they reach the attempt cap."""
    settings = get_settings()
    now = utcnow()
    report = {"republished": 0, "requeued": 0, "failed": 0, "cancelled": 0}
    idle_queues = stuck.idle_queues()
    for job in repository.queued_before(db, now - timedelta(seconds=settings.reconcile_queued_after_s)):
        if repository.model_has_active_job(db, job.model_id, job.id):
            continue  # waiting its turn: its own deferred message, or the hand-off, starts it
        # sent while a worker was idle to take it and nothing else held the model: it counts
        sends = job.unclaimed_sends + (1 if job_queue(settings.queue_name, job.device_class) in idle_queues else 0)
        if sends >= settings.job_max_unclaimed_sends:
            report["failed"] += fail(
                db,
                job,
                job_problem(
                    "Never started",
                    f"the job was sent to live workers {sends} times and none started it "
                    "(the workers' logs say why: the task fails before it claims the job)",
                ),
                actor=actor,
            )
        elif repository.compare_and_set(db, job.id, QUEUED, {"enqueued_at": now, "unclaimed_sends": sends}):
            on_commit(db, lambda jid=job.id, dc=job.device_class: enqueue_job(jid, dc))
            report["republished"] += 1
    for job, why in stuck.find_stuck(db, now):
        with log_context.bound(job_id=job.id):
            log.warning("job %s stuck on worker %s (%s), attempt %d", job.id, job.worker, why, job.attempt)
        if job.state == CANCELLING:
            report["cancelled"] += finish_cancelled(db, job, actor=actor, steps_done=job.progress_step)
        elif job.attempt >= settings.job_max_attempts:
            report["failed"] += fail(
                db,
                job,
                job_problem(
                    "Attempt cap reached",
                    f"the worker running attempt {job.attempt} stopped answering and the cap "
                    f"is {settings.job_max_attempts} attempts",
                ),
                actor=actor,
            )
        elif transition(
            db,
            job,
            QUEUED,
            actor=actor,
            reason=why,
            enqueued_at=now,
            lease_expires_at=None,
            worker=None,
            unclaimed_sends=0,
        ):
            on_commit(db, lambda jid=job.id, dc=job.device_class: enqueue_job(jid, dc))
            report["requeued"] += 1
    return report
