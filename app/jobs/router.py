from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.deps import RequestsReader, RequestsWriter
from app.core.deps import SessionDep
from app.core.pagination import Page, PageSize, PageToken, decode_id_token, decode_int_token, id_page, page_of
from app.core.validation import INT32_MAX
from app.db import commit
from app.jobs import repository, service
from app.jobs.schemas import BatchOut, JobOut
from app.jobs.states import JobState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_out(db, job) -> JobOut:
    return JobOut.of(job, repository.request_ids_of(db, job.id))


@router.get("", response_model=Page[JobOut], summary="List jobs (oldest first)")
def list_jobs(
    db: SessionDep,
    caller: RequestsReader,
    model_id: uuid.UUID | None = None,
    state: JobState | None = None,
    page_size: PageSize = 50,
    page_token: PageToken = None,
):
    rows = repository.list_jobs(
        db,
        tenant_id=caller.tenant_id,
        model_id=model_id,
        state=state,
        after=decode_id_token(page_token),
        limit=page_size + 1,
    )
    return id_page(rows, page_size, lambda j: job_out(db, j))


@router.get("/{job_id}", response_model=JobOut, summary="A job: state, progress, metrics, result version")
def get_job(db: SessionDep, caller: RequestsReader, job_id: uuid.UUID):
    return job_out(db, service.get_job(db, job_id, tenant_id=caller.tenant_id))


@router.get("/{job_id}/batches", response_model=Page[BatchOut], summary="The job's per-batch log (cursor pages)")
def list_batches(
    db: SessionDep,
    caller: RequestsReader,
    job_id: uuid.UUID,
    attempt: Annotated[int | None, Query(ge=1, le=INT32_MAX, description="Only this attempt.")] = None,
    page_size: PageSize = 100,
    page_token: PageToken = None,
):
    service.get_job(db, job_id, tenant_id=caller.tenant_id)
    cursor = decode_int_token(page_token, 2, INT32_MAX)
    after = (cursor[0], cursor[1]) if cursor else None
    rows = repository.list_batches(db, job_id, attempt=attempt, after=after, limit=page_size + 1)
    return page_of(rows, page_size, key=lambda b: [b.attempt, b.step], convert=BatchOut.model_validate)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Cancel a QUEUED or RUNNING job (a running one stops at its next batch)",
)
def cancel_job(db: SessionDep, caller: RequestsWriter, job_id: uuid.UUID):
    job = service.request_cancel(db, service.get_job(db, job_id, tenant_id=caller.tenant_id), actor=caller.actor)
    commit(db)
    return job_out(db, job)
