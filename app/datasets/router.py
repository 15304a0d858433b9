from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.auth.deps import ModelsReader, ModelsWriter
from app.core.deps import SessionDep
from app.core.errors import Invalid
from app.core.pagination import Page, PageSize, PageToken, decode_id_token, id_page
from app.core.validation import SafeName
from app.datasets import repository, service
from app.datasets.schemas import DatasetOut
from app.db import commit

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    summary="Register a dataset: upload an .npz or a .jsonl, name a file on the server, or pick a built-in one",
)
def create_dataset(
    db: SessionDep,
    caller: ModelsWriter,
    response: Response,
    file: Annotated[
        UploadFile | None,
        File(
            description="An .npz with arrays ids, x, y and optional split (classifiers), or a .jsonl with one "
            '{"id": ..., "text": ..., "split": ...} object per line (language models; split optional). The '
            "format is the file name's suffix, else the content's."
        ),
    ] = None,
    name: Annotated[SafeName | None, Form(description="A name for the dataset.")] = None,
    builtin: Annotated[Literal["digits"] | None, Form(description="A built-in dataset instead of a file.")] = None,
    server_path: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="An absolute path of an .npz or .jsonl already on the server, under `<root>/<your "
            "tenant id>/` for a root UNLEARND_DATASET_ROOTS lists (403 otherwise); its content is copied into "
            "the artifact store.",
        ),
    ] = None,
):
    if sum(x is not None for x in (file, builtin, server_path)) != 1:
        raise Invalid("send exactly one of `file` (an .npz or .jsonl upload), `server_path` or `builtin` (e.g. digits)")
    if builtin is not None:
        ds = service.register_builtin(db, builtin=builtin, name=name, tenant_id=caller.tenant_id, actor=caller.actor)
    elif name is None:
        raise Invalid("`name` is required with an uploaded file or a server path")
    elif file is not None:
        data = file.file.read()  # size already bounded by BodySizeLimitMiddleware
        ds = service.register_upload(
            db, name=name, data=data, filename=file.filename, tenant_id=caller.tenant_id, actor=caller.actor
        )
    else:
        ds = service.register_server_path(
            db, name=name, path=server_path, tenant_id=caller.tenant_id, actor=caller.actor
        )
    commit(db)
    response.headers["Location"] = f"/v1/datasets/{ds.id}"
    return ds


@router.get("", response_model=Page[DatasetOut], summary="List datasets")
def list_datasets(db: SessionDep, caller: ModelsReader, page_size: PageSize = 50, page_token: PageToken = None):
    rows = repository.list_datasets(
        db, tenant_id=caller.tenant_id, after=decode_id_token(page_token), limit=page_size + 1
    )
    return id_page(rows, page_size, DatasetOut.model_validate)


@router.get("/{dataset_id}", response_model=DatasetOut, summary="One dataset")
def get_dataset(db: SessionDep, caller: ModelsReader, dataset_id: uuid.UUID):
    return service.get_dataset(db, dataset_id, tenant_id=caller.tenant_id)
