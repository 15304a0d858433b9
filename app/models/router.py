from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from app.auth.deps import ModelsReader, ModelsWriter
from app.core.deps import SessionDep
from app.core.errors import NotFound, ProblemError, pydantic_errors
from app.core.pagination import Page, PageSize, PageToken, decode_id_token, decode_int_token, id_page, page_of
from app.core.validation import INT32_MAX, SafeName
from app.db import commit
from app.jobs import repository as jobs_repo
from app.models import repository, residual, service
from app.models.schemas import ArchitectureOut, ModelOut, ModelSpec, ResidualErasuresOut, UpdateLogOut, VersionOut
from app.storage import get_artifact_store
from app.update_logs import repository as update_logs_repo
from workers.engine import architectures

router = APIRouter(prefix="/v1", tags=["models"])
VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="The version number (1 is the first).")]


def _model_out(db, model) -> ModelOut:
    out = ModelOut.model_validate(model)
    out.training_job_id = jobs_repo.train_job_id(db, model.id)
    return out


@router.get("/architectures", response_model=list[ArchitectureOut], summary="Architectures a model can use")
def list_architectures(caller: ModelsReader):
    return [
        ArchitectureOut(
            name=a.name,
            description=a.description,
            kind=a.kind,
            dataset_format=service.DATASET_FORMAT.get(a.kind, "arrays"),
            config_schema=a.config_model.model_json_schema(),
        )
        for a in architectures.registry().values()
    ]


@router.post(
    "/models",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ModelOut,
    summary="Register a model and train it on a worker (202; poll training_job_id)",
)
def create_model(db: SessionDep, caller: ModelsWriter, spec: ModelSpec, response: Response):
    model, job = service.register_for_training(db, spec, tenant_id=caller.tenant_id, actor=caller.actor)
    commit(db)
    response.headers["Location"] = f"/v1/models/{model.id}"
    out = ModelOut.model_validate(model)
    out.training_job_id = job.id
    return out


@router.post(
    "/models/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelOut,
    summary="Register a model with uploaded safetensors weights (version 1)",
)
def upload_model(
    db: SessionDep,
    caller: ModelsWriter,
    response: Response,
    spec: Annotated[str, Form(description="The model spec as JSON (same fields as POST /v1/models).")],
    weights: Annotated[UploadFile, File(description="A .safetensors file matching the architecture.")],
):
    try:
        parsed = ModelSpec.model_validate_json(spec)
    except ValidationError as exc:
        raise ProblemError(
            422,
            "validation-error",
            "Invalid model spec",
            "the `spec` form field did not validate",
            errors=pydantic_errors(exc.errors(include_input=False), ("body", "spec")),
        ) from None
    model = service.register_with_weights(db, parsed, weights.file, tenant_id=caller.tenant_id, actor=caller.actor)
    commit(db)
    response.headers["Location"] = f"/v1/models/{model.id}"
    return _model_out(db, model)


@router.get("/models", response_model=Page[ModelOut], summary="List models")
def list_models(
    db: SessionDep,
    caller: ModelsReader,
    name: Annotated[SafeName | None, Query(description="Only the model with this name.")] = None,
    page_size: PageSize = 50,
    page_token: PageToken = None,
):
    rows = repository.list_models(
        db, tenant_id=caller.tenant_id, name=name, after=decode_id_token(page_token), limit=page_size + 1
    )
    return id_page(rows, page_size, lambda m: _model_out(db, m))


@router.get("/models/{model_id}", response_model=ModelOut, summary="One model")
def get_model(db: SessionDep, caller: ModelsReader, model_id: uuid.UUID):
    return _model_out(db, service.get_model(db, model_id, tenant_id=caller.tenant_id))


@router.get(
    "/models/{model_id}/update-log",
    response_model=UpdateLogOut,
    summary="The model's current update log: steps recorded, remaining, subtracted and purged, bytes, storage ratio",
)
def get_update_log(db: SessionDep, caller: ModelsReader, model_id: uuid.UUID):
    model = service.get_model(db, model_id, tenant_id=caller.tenant_id)
    log = update_logs_repo.get(db, model.update_log_id) if model.update_log_id else None
    if log is None:
        raise NotFound("update log of model", model_id)
    out = UpdateLogOut.model_validate(log)
    counts = update_logs_repo.step_counts(db, log.id)
    out.steps_remaining, out.steps_subtracted, out.steps_purged = counts["live"], counts["subtracted"], counts["purged"]
    return out


@router.get(
    "/models/{model_id}/residual-erasures",
    response_model=ResidualErasuresOut,
    summary="Erased samples this model still holds because they were erased from another model of its dataset",
)
def get_residual_erasures(db: SessionDep, caller: ModelsReader, model_id: uuid.UUID):
    model = service.get_model(db, model_id, tenant_id=caller.tenant_id)
    held = residual.held_erased_samples(db, model)
    return ResidualErasuresOut(
        model_id=model.id,
        head_version=model.head_version,
        samples_held=held.count,
        held_sha256=held.sha256,
        erased_by_requests=held.erased_by_requests,
    )


@router.get("/models/{model_id}/versions", response_model=Page[VersionOut], summary="A model's versions")
def list_versions(
    db: SessionDep, caller: ModelsReader, model_id: uuid.UUID, page_size: PageSize = 50, page_token: PageToken = None
):
    service.get_model(db, model_id, tenant_id=caller.tenant_id)
    cursor = decode_int_token(page_token, 1, INT32_MAX)
    after = cursor[0] if cursor else None
    rows = repository.list_versions(db, model_id, after=after, limit=page_size + 1)
    return page_of(rows, page_size, key=lambda v: [v.version], convert=VersionOut.model_validate)


@router.get("/models/{model_id}/versions/{version}", response_model=VersionOut, summary="One version")
def get_version(db: SessionDep, caller: ModelsReader, model_id: uuid.UUID, version: VersionNumber):
    return service.get_version(db, model_id, version, tenant_id=caller.tenant_id)


@router.get(
    "/models/{model_id}/versions/{version}/checkpoint",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The safetensors checkpoint; X-Checkpoint-SHA256 holds its sha256.",
        }
    },
    summary="Download a checkpoint (streamed, sha256 verified while streaming)",
)
def download_checkpoint(db: SessionDep, caller: ModelsReader, model_id: uuid.UUID, version: VersionNumber):
    found = service.version_for_download(db, model_id, version, tenant_id=caller.tenant_id, actor=caller.actor)
    commit(db)
    headers = {
        "Content-Length": str(found.size_bytes),
        "X-Checkpoint-SHA256": found.sha256,
        "ETag": f'"{found.sha256}"',
        "Content-Disposition": f'attachment; filename="{model_id}-v{found.version}.safetensors"',
    }
    return StreamingResponse(
        get_artifact_store().iter_verified(found.artifact_key, found.sha256),
        media_type="application/octet-stream",
        headers=headers,
    )
