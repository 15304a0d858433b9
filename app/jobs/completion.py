"""How a job ends well: one transaction makes the new version visible, moves the model's head,
retires the versions that still hold the erased samples, tombstones those samples and records it
all. Called by the worker once the checkpoint file is complete in the artifact store."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.datasets import service as datasets
from app.forget_requests import repository as requests_repo
from app.jobs import repository, service
from app.jobs.states import SUCCEEDED
from app.jobs.tables import Job
from app.models import repository as models_repo
from app.models import residual, retention
from app.models import service as models
from app.storage import StoredArtifact
from app.update_logs import service as update_logs
from workers.engine.log_manifest import UpdateLogManifest


def succeed(
    db: Session,
    job: Job,
    *,
    actor: str,
    metrics: dict[str, Any],
    artifact: StoredArtifact,
    update_log: UpdateLogManifest | None = None,
    consumed_steps: list[int] | None = None,
) -> bool:
    """``update_log``: what a train job recorded; ``consumed_steps``: the logged steps an amnesiac job
    subtracted (they leave the index)."""
    model = models_repo.get(db, job.model_id)
    log_id = model.update_log_id
    version = (model.head_version or 0) + 1
    if not service.transition(
        db, job, SUCCEEDED, actor=actor, result_version=version, metrics=metrics, progress_fraction=1.0
    ):
        return False
    models.add_version(
        db,
        model=model,
        version=version,
        parent=job.source_version,
        artifact=artifact,
        job_id=job.id,
        metrics=metrics,
        actor=actor,
    )
    if update_log is not None:
        update_logs.record(db, model_id=model.id, version=version, job_id=job.id, manifest=update_log, actor=actor)
    elif log_id and consumed_steps:
        update_logs.consume(db, log_id=log_id, steps=consumed_steps, model_id=model.id, job_id=job.id, actor=actor)
    elif log_id and job.method == "retrain":
        update_logs.detach(
            db,
            model_id=model.id,
            log_id=log_id,
            job_id=job.id,
            actor=actor,
            reason="retrained from scratch: the log no longer describes the model",
        )
    if job.kind == "unlearn":
        retention.retire_earlier_versions(db, model=model, below=version, job_id=job.id, actor=actor)
        request_ids = repository.request_ids_of(db, job.id)
        for rid in request_ids:
            fr = requests_repo.get(db, rid)
            rows = datasets.erase(
                db, model.dataset_id, scope_type=fr.scope_type, values=fr.scope_values, request_id=fr.id
            )
            audit.record(
                db,
                action="dataset.samples_erased",
                actor=actor,
                tenant_id=model.tenant_id,
                entity_type="dataset",
                entity_id=model.dataset_id,
                model_id=model.id,
                forget_request_id=fr.id,
                job_id=job.id,
                payload={"rows_tombstoned": rows, "scope_type": fr.scope_type, "scope_sha256": fr.scope_sha256},
            )
        # after every request's tombstones: one computation over their union, one event per model
        residual.record_other_models_holding(
            db, model=model, forget_request_ids=request_ids, job_id=job.id, actor=actor
        )
    return True
