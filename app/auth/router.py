from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from app.auth import deps, repository, service
from app.auth.deps import Admin
from app.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from app.core.deps import SessionDep
from app.core.pagination import Page, PageSize, PageToken, decode_id_token, id_page
from app.db import commit

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    summary="Create an API key in your tenant (admin); its secret is shown only in this answer",
)
def create_api_key(db: SessionDep, caller: Admin, body: ApiKeyCreate, response: Response):
    key, secret = service.create_key(
        db, tenant_id=caller.tenant_id, name=body.name, scopes=list(body.scopes), actor=caller.actor
    )
    commit(db)
    response.headers["Location"] = f"/v1/api-keys/{key.id}"
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), secret=secret)


@router.get("", response_model=Page[ApiKeyOut], summary="List your tenant's API keys (admin; no secrets)")
def list_api_keys(db: SessionDep, caller: Admin, page_size: PageSize = 50, page_token: PageToken = None):
    rows = repository.list_keys(db, caller.tenant_id, after=decode_id_token(page_token), limit=page_size + 1)
    return id_page(rows, page_size, ApiKeyOut.model_validate)


@router.get("/{key_id}", response_model=ApiKeyOut, summary="One API key (admin)")
def get_api_key(db: SessionDep, caller: Admin, key_id: uuid.UUID):
    return service.get_key(db, key_id, tenant_id=caller.tenant_id)


@router.post("/{key_id}/revoke", response_model=ApiKeyOut, summary="Revoke an API key (admin); it stops working")
def revoke_api_key(db: SessionDep, caller: Admin, key_id: uuid.UUID):
    key = service.revoke_key(db, service.get_key(db, key_id, tenant_id=caller.tenant_id), actor=caller.actor)
    commit(db)
    deps.forget_cached(key.secret_sha256)
    return key
