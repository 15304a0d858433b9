from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, status
from fastapi.responses import JSONResponse, Response

from app.auth.deps import RequestsReader, RequestsWriter
from app.core.deps import SessionDep
from app.core.pagination import Page, PageSize, PageToken, decode_id_token, id_page
from app.core.validation import ClientKey, Instant
from app.db import commit, session_scope
from app.db.session import new_read_session
from app.db.types import utcnow
from app.forget_requests import repository, service
from app.forget_requests.schemas import ForgetRequestCreate, ForgetRequestOut, MethodOut
from app.jobs.states import JobState

router = APIRouter(prefix="/v1", tags=["forget requests"])


@router.get("/methods", response_model=list[MethodOut], summary="Unlearning methods and their params")
def list_methods(caller: RequestsReader):
    return service.methods()


@router.get(
    "/verification-policy",
    summary="The verification gate: thresholds, their bounds, held-out roles, method auto's plans",
)
def verification_policy(caller: RequestsReader) -> dict[str, Any]:
    return service.verification_policy()


@router.post(
    "/forget-requests",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ForgetRequestOut,
    summary="Ask for a model to forget samples or classes (202 + Location; poll it)",
)
def create_forget_request(
    caller: RequestsWriter,
    body: Annotated[ForgetRequestCreate, Body()],
    idempotency_key: Annotated[
        ClientKey | None, Header(description="Retries with the same key and body get the original answer.")
    ] = None,
):
    # The session opens in the endpoint's own thread hop: a dependency's would cost two hops more.
    with session_scope() as db:
        answer = service.submit(
            db, body, idempotency_key=idempotency_key, tenant_id=caller.tenant_id, actor=caller.actor
        )
        commit(db)
    headers = {"Location": answer.location}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.get("/forget-requests", response_model=Page[ForgetRequestOut], summary="List forget requests")
def list_forget_requests(
    db: SessionDep,
    caller: RequestsReader,
    model_id: uuid.UUID | None = None,
    state: JobState | None = None,
    overdue: Annotated[
        bool, Query(description="Only requests past their due_at that are neither SUCCEEDED nor CANCELLED.")
    ] = False,
    due_before: Annotated[Instant | None, Query(description="Only requests due at or before this instant.")] = None,
    page_size: PageSize = 50,
    page_token: PageToken = None,
):
    rows = repository.list_requests(
        db,
        tenant_id=caller.tenant_id,
        model_id=model_id,
        state=state,
        overdue_at=utcnow() if overdue else None,
        due_by=due_before,
        after=decode_id_token(page_token),
        limit=page_size + 1,
    )
    return id_page(rows, page_size, lambda fr: service.describe(db, fr))


@router.get(
    "/forget-requests/{forget_request_id}", response_model=ForgetRequestOut, summary="One forget request, with its jobs"
)
def get_forget_request(caller: RequestsReader, forget_request_id: uuid.UUID):
    # a poll: a read-only session in the endpoint's hop, the model serialised once (not validated again)
    with new_read_session() as db:
        out = service.get_described(db, forget_request_id, tenant_id=caller.tenant_id)
    return Response(out.model_dump_json(), media_type="application/json")


@router.post(
    "/forget-requests/{forget_request_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ForgetRequestOut,
    summary="Cancel the request's queued or running job",
)
def cancel_forget_request(db: SessionDep, caller: RequestsWriter, forget_request_id: uuid.UUID):
    fr = service.cancel(db, service.get_request(db, forget_request_id, tenant_id=caller.tenant_id), actor=caller.actor)
    commit(db)
    return service.describe(db, fr)
