"""No residual copies: versions that still hold erased samples are retired, then their files purged.

Every version of a model older than the one an erasure produced was trained, directly or through
its parents, on the erased samples (the samples are tombstoned only when the erasure succeeds), so
all of them are retired in the erasure's own transaction. Download of a retired version answers
410. Their files are deleted by :func:`purge_due`, run by the worker right after the erasure
commits and by the periodic housekeeping task, once ``purge_after`` (retirement + the configured
grace, default 0) has passed. Each retirement and each purge is an audit event.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.db.types import utcnow
from app.models import repository
from app.models.tables import Model, ModelVersion
from app.settings import get_settings
from app.storage import ArtifactStore

RETIRED = "RETIRED"


def retire_earlier_versions(
    db: Session, *, model: Model, below: int, job_id: uuid.UUID, actor: str
) -> list[ModelVersion]:
    model_id = model.id
    now = utcnow()
    purge_after = now + timedelta(seconds=get_settings().retired_version_grace_s)
    retired = repository.active_versions_below(db, model_id, below)
    for version in retired:
        version.state = RETIRED
        version.retired_at = now
        version.retired_by_job_id = job_id
        version.purge_after = purge_after
        audit.record(
            db,
            action="model.version_retired",
            actor=actor,
            tenant_id=model.tenant_id,
            entity_type="model_version",
            entity_id=f"{model_id}/v{version.version}",
            model_id=model_id,
            job_id=job_id,
            payload={
                "version": version.version,
                "sha256": version.sha256,
                "reason": f"holds samples erased by job {job_id} (version {below})",
                "purge_after": purge_after.isoformat(),
            },
        )
    db.flush()
    return retired


def purge_due(db: Session, store: ArtifactStore, *, actor: str, now: datetime | None = None) -> list[ModelVersion]:
    """Delete the files of retired versions whose grace has passed; the caller commits.

    The file goes first, then the row says so: if the commit fails the next pass deletes nothing
    and records it then. The store is content-addressed, so a byte-identical version that is still
    in use (its own sha256, same key) keeps the file; the event says which.
    """
    purged = repository.versions_due_for_purge(db, now or utcnow())
    for version in purged:
        sharing = repository.live_versions_with_artifact(db, version.artifact_key, excluding=version.id)
        deleted = False if sharing else store.delete(version.artifact_key)
        version.purged_at = utcnow()
        audit.record(
            db,
            action="model.version_purged",
            actor=actor,
            tenant_id=repository.get(db, version.model_id).tenant_id,
            entity_type="model_version",
            entity_id=f"{version.model_id}/v{version.version}",
            model_id=version.model_id,
            job_id=version.retired_by_job_id,
            payload={
                "version": version.version,
                "sha256": version.sha256,
                "size_bytes": version.size_bytes,
                "file_deleted": deleted,
                "file_kept_for": [f"{v.model_id}/v{v.version}" for v in sharing],
            },
        )
    db.flush()
    return purged


def sweep_orphan_checkpoints(db: Session, store: ArtifactStore, *, grace_s: float) -> list[str]:
    """Delete checkpoint files no version row names, once older than ``grace_s``, and half-written
    uploads as old. A worker killed between writing a job's checkpoint and the commit that records
    its version leaves such a file (its retry usually rewrites the same content-addressed key, but
    not when the job then fails for good). The grace keeps the sweep away from a job that has just
    written its file and is about to commit. Read-only on the database; returns the keys deleted."""
    candidates = store.keys_older_than("checkpoints", grace_s)
    referenced = repository.referenced_artifact_keys(db, candidates)
    orphans = [key for key in candidates if key not in referenced]
    for key in orphans:
        store.delete(key)
    store.delete_stale_staging(grace_s)
    return orphans
