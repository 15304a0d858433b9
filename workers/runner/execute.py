"""One job, start to finish. The database transactions are short and explicit: claim, progress
flushes, RUNNING -> VERIFYING, and one final transaction (version + head + tombstones + audit)."""

from __future__ import annotations

import errno
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.db import commit, rollback, session_scope
from app.jobs import completion
from app.jobs import repository as jobs_repo
from app.jobs import service as jobs
from app.jobs.service import Claim, job_problem
from app.jobs.states import CANCELLING, RUNNING, VERIFYING
from app.jobs.tables import Job
from app.queue import enqueue_job
from app.settings import get_settings
from app.storage import ArtifactIntegrityError, ArtifactMissingError, get_artifact_store
from workers.engine import checkpoints
from workers.engine.device import reset_peak_memory, setup_device
from workers.engine.methods import MethodNotApplicable
from workers.engine.methods.base import IncompleteUpdateLog
from workers.engine.runtime import Cancelled, Progress, TrainingDiverged
from workers.housekeeping import erase_from_dataset_files, purge_retired_versions, purge_update_logs
from workers.runner.attempts import VerificationFailed
from workers.runner.bodies import bodies_for
from workers.runner.db_retry import with_db_retry
from workers.runner.inputs import load_inputs
from workers.runner.reporting import Heartbeat, JobReporter, LostOwnership

log = logging.getLogger(__name__)
_STORE_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}  # a write the store refused


def execute_job(job_id: str, *, worker: str) -> Claim:
    with session_scope() as db:
        try:
            claimed = jobs.claim(db, uuid.UUID(job_id), worker=worker)
            commit(db)
        except IntegrityError:  # another job for this model started at the same instant
            rollback(db)
            return Claim.DEFER
    if claimed.outcome is not Claim.RUN:
        return claimed.outcome
    job = claimed.job
    log.info("job %s: attempt %d of %s (%s) started", job.id, job.attempt, job.method, job.kind)
    with Heartbeat(job):
        _run_claimed(job, f"worker:{worker}")
    _hand_off(job.model_id)
    return Claim.RUN


def _hand_off(model_id: uuid.UUID) -> None:
    """Publish the model's next QUEUED job now that the model is free. Its own message is waiting
    out a deferral (DEFER_SECONDS) and would start it up to that much later: with coalescing, the
    requests that gathered behind this job are served by that next one, so every second of idle
    model is latency for all of them. A second delivery of one job is harmless (claim skips it)."""
    try:
        with session_scope() as db:
            next_job = jobs_repo.oldest_queued_of_model(db, model_id)
        if next_job is not None:
            enqueue_job(*next_job)
    except Exception:  # the deferred message and the reconciler still start it
        log.warning("could not hand the model %s over to its next job", model_id, exc_info=True)


def _run_claimed(job: Job, actor: str) -> None:
    reporter = JobReporter(job)
    progress = Progress(hooks=reporter)
    device = setup_device(get_settings().device, deterministic=get_settings().deterministic)
    try:
        inputs = load_inputs(job)
        reset_peak_memory(device)
        started = time.perf_counter()
        train_body, unlearn_body = bodies_for(inputs.kind)
        body = train_body if job.kind == "train" else unlearn_body
        result = body(job, inputs, device, progress, started, _JobHooks(job, reporter, actor))
        artifact = get_artifact_store().put_bytes(
            checkpoints.to_bytes(result.model, {"model_id": inputs.model_id, "job_id": str(job.id)}),
            kind="checkpoints",
            suffix=".safetensors",
        )

        def final_transaction() -> None:
            with session_scope() as db:
                completion.succeed(
                    db,
                    _owned(db, job),
                    actor=actor,
                    metrics=result.metrics,
                    artifact=artifact,
                    update_log=result.update_log,
                    consumed_steps=result.consumed_steps,
                )
                commit(db)

        committing = time.perf_counter()
        with_db_retry(final_transaction, f"job {job.id} result")
        # a worker killed inside it repeats the whole attempt: how long that window is, per job
        log.info("job %s succeeded", job.id, extra={"final_transaction_s": round(time.perf_counter() - committing, 3)})
        if job.kind == "unlearn":  # no residual copies: earlier versions' files, update-log records
            purge_retired_versions(actor)
            purge_update_logs(actor, job_id=job.id)
            erase_from_dataset_files(actor)  # the tombstoned rows leave the stored dataset file
    except LostOwnership as exc:
        log.warning("job %s: %s; stopping without writing", job.id, exc)
    except VerificationFailed as failure:
        log.info("job %s: %s", job.id, failure)
        problem = job_problem(
            "Verification failed",
            f"{failure}; no version was made and the model's head version is unchanged",
            slug="verification-failed",
            status=409,
            failed_tests=failure.failed_tests,
        )
        measured, method = failure.metrics, failure.method
        _finish(
            job,
            lambda db, current: jobs.fail_verification(
                db, current, problem, method=method, metrics=measured, actor=actor
            ),
        )
    except Cancelled:
        _finish(job, lambda db, current: jobs.finish_cancelled(db, current, actor=actor, steps_done=progress.step))
        log.info("job %s cancelled after %d steps", job.id, progress.step)
    except Exception as exc:
        log.exception("job %s failed", job.id)
        problem = _problem_for(exc)
        _finish(job, lambda db, current: jobs.fail(db, current, problem, actor=actor))


def _owned(db, job: Job) -> Job:
    """This session's copy of the job, provided this attempt still owns it."""
    current = jobs.get_job(db, job.id, tenant_id=job.tenant_id)
    if current.attempt != job.attempt:
        raise LostOwnership(f"job {job.id} is on attempt {current.attempt} now")
    return current


def _finish(job: Job, end: Callable) -> None:
    def write() -> None:
        with session_scope() as db:
            try:
                end(db, _owned(db, job))
            except LostOwnership as exc:
                log.warning("job %s: %s; leaving it to its owner", job.id, exc)
                return
            commit(db)

    with_db_retry(write, f"job {job.id} end")


class _JobHooks:
    """What an unlearn job's attempts (workers/runner/attempts.py) tell the database."""

    def __init__(self, job: Job, reporter: JobReporter, actor: str):
        self.job, self.reporter, self.actor = job, reporter, actor

    def verifying(self) -> None:
        _enter_verifying(self.job, self.reporter, self.actor)

    def escalating(self, attempt: dict[str, Any], next_method: str) -> None:
        job, actor = self.job, self.actor
        self.reporter.flush(phase="escalate")

        def write() -> bool:
            with session_scope() as db:
                moved = jobs.escalate(db, _owned(db, job), attempt=attempt, next_method=next_method, actor=actor)
                commit(db)
            return moved

        if not with_db_retry(write, f"job {job.id} escalation"):
            raise LostOwnership(f"job {job.id} could not go back to RUNNING")
        self.reporter.state = RUNNING
        log.info("job %s: %s did not pass; escalating to %s", job.id, attempt["method"], next_method)


def _enter_verifying(job: Job, reporter: JobReporter, actor: str) -> None:
    """RUNNING -> VERIFYING, unless a cancel arrived meanwhile (or the job is no longer ours)."""
    reporter.flush(phase="evaluate")

    def write() -> tuple[Job, bool]:
        with session_scope() as db:
            current = _owned(db, job)
            moved = jobs.transition(db, current, VERIFYING, actor=actor, progress_phase="evaluate")
            commit(db)
        return current, moved

    current, moved = with_db_retry(write, f"job {job.id} verifying")
    if not moved:
        if current.state == CANCELLING:
            raise Cancelled("cancel requested before verification")
        raise LostOwnership(f"job {job.id} is {current.state}")


def _problem_for(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ArtifactMissingError):
        return job_problem("Stored file missing", str(exc), slug="artifact-missing")
    if isinstance(exc, ArtifactIntegrityError):
        return job_problem("Integrity check failed", f"{exc}: the stored file was altered or corrupted")
    if isinstance(exc, OSError) and exc.errno in _STORE_FULL:
        why = os.strerror(exc.errno)
        return job_problem(
            "Artifact store write failed",
            f"the artifact store refused the write ({why})",
            slug="artifact-store-write-failed",
            status=507,
        )
    if isinstance(exc, IncompleteUpdateLog):  # before MethodNotApplicable (its base); counts, never IDs
        return job_problem("Update log incomplete", str(exc), slug="update-log-incomplete", status=409, **exc.counts())
    if isinstance(exc, MethodNotApplicable):  # checked at submit; a log retired meanwhile, or missing steps
        return job_problem("Method not applicable", str(exc), slug="method-not-applicable", status=409)
    if isinstance(exc, TrainingDiverged):
        return job_problem("Training diverged", f"{exc}; try a smaller learning rate", status=422)
    # The message may echo data (a KeyError names a key): keep only the exception's type.
    return job_problem(
        "Job failed",
        f"unexpected {type(exc).__name__} while running the job; see the worker log",
        slug="internal-error",
    )
