"""Update logs in the service: persisting what the recorder wrote, marking subtracted steps,
detaching a log that no longer describes the model."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.ids import uuid7
from app.db.types import utcnow
from app.models import repository as models_repo
from app.update_logs import repository
from app.update_logs.tables import UpdateLog
from workers.engine.log_manifest import UpdateLogManifest


def record(
    db: Session, *, model_id: uuid.UUID, version: int, job_id: uuid.UUID, manifest: UpdateLogManifest, actor: str
) -> UpdateLog:
    log = UpdateLog(
        id=uuid7(),
        model_id=model_id,
        version=version,
        job_id=job_id,
        config=manifest.config.model_dump(),
        param_shapes=[[name, shape] for name, shape in manifest.param_shapes.items()],
        steps_recorded=len(manifest.entries),
        dense_bytes=manifest.dense_bytes,
        stored_bytes=manifest.stored_bytes,
        gradient_bytes=manifest.gradient_bytes,
        created_at=utcnow(),
    )
    chunks = [
        {
            "log_id": log.id,
            "kind": c.kind,
            "chunk_index": c.index,
            "artifact_key": c.key,
            "sha256": c.sha256,
            "size_bytes": c.size,
        }
        for c in manifest.chunks
    ]
    steps = [
        {
            "log_id": log.id,
            "step": e.step,
            "epoch": e.epoch,
            "batch": e.batch,
            "chunk_index": e.chunk,
            "grad_chunk_index": e.grad_chunk,
            "sample_count": len(e.sample_ids),
        }
        for e in manifest.entries
    ]
    samples = [
        {"log_id": log.id, "sample_id": sid, "step": e.step, "position": i}
        for e in manifest.entries
        for i, sid in enumerate(e.sample_ids)
    ]
    repository.add(db, log, chunks, steps, samples)
    models_repo.set_update_log(db, model_id, log.id)
    audit.record(
        db,
        action="update_log.recorded",
        actor=actor,
        tenant_id=_tenant_of(db, model_id),
        entity_type="update_log",
        entity_id=log.id,
        model_id=model_id,
        job_id=job_id,
        payload={
            "version": version,
            "mode": manifest.config.mode,
            "steps": len(manifest.entries),
            "stored_bytes": manifest.stored_bytes,
            "dense_bytes": manifest.dense_bytes,
            "gradient_bytes": manifest.gradient_bytes,
        },
    )
    return log


def consume(
    db: Session, *, log_id: uuid.UUID, steps: list[int], model_id: uuid.UUID, job_id: uuid.UUID, actor: str
) -> int:
    """The subtracted steps leave the log, marked ``subtracted`` (their rows stay: a later request for
    another sample of their batches finds them accounted for, and never subtracts them again). Their
    bytes leave the chunk files in the purge that follows the erasure (:mod:`app.update_logs.purge`)."""
    removed = repository.mark_subtracted(db, log_id, steps)
    audit.record(
        db,
        action="update_log.steps_consumed",
        actor=actor,
        tenant_id=_tenant_of(db, model_id),
        entity_type="update_log",
        entity_id=log_id,
        model_id=model_id,
        job_id=job_id,
        payload={"steps": removed, "remaining": repository.remaining_steps(db, log_id)},
    )
    return removed


def detach(db: Session, *, model_id: uuid.UUID, log_id: uuid.UUID, job_id: uuid.UUID, reason: str, actor: str) -> None:
    models_repo.set_update_log(db, model_id, None)
    audit.record(
        db,
        action="update_log.detached",
        actor=actor,
        tenant_id=_tenant_of(db, model_id),
        entity_type="update_log",
        entity_id=log_id,
        model_id=model_id,
        job_id=job_id,
        payload={"reason": reason},
    )


def _tenant_of(db: Session, model_id: uuid.UUID) -> str:
    return models_repo.get(db, model_id).tenant_id
