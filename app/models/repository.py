from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.datasets.tables import Dataset
from app.db import rows
from app.db.rows import Snapshot
from app.models.tables import Model, ModelVersion


def get(db: Session, model_id: uuid.UUID) -> Model | None:
    return db.get(Model, model_id)


def get_with_dataset(db: Session, model_id: uuid.UUID) -> tuple[Snapshot, Snapshot] | None:
    """The model and its dataset in one query, as read-only objects (app.db.rows: a submit's hot path)."""
    found = db.execute(_WITH_DATASET, {"id": model_id}).first()
    if found is None:
        return None
    model, dataset = rows.split(found, _MODEL, _DATASET)
    return model, dataset


_MODEL, _DATASET = Model.__table__, Dataset.__table__
_WITH_DATASET = (
    select(_MODEL, _DATASET).join(_DATASET, _DATASET.c.id == _MODEL.c.dataset_id).where(_MODEL.c.id == bindparam("id"))
)


def get_by_name(db: Session, tenant_id: str, name: str) -> Model | None:
    return db.scalar(select(Model).where(Model.tenant_id == tenant_id, Model.name == name))


def add(db: Session, model: Model) -> None:
    db.add(model)
    db.flush()


def set_state(db: Session, model_id: uuid.UUID, state: str) -> None:
    db.execute(
        update(Model).where(Model.id == model_id).values(state=state).execution_options(synchronize_session="fetch")
    )


def list_models(db: Session, *, tenant_id: str, name: str | None, after: uuid.UUID | None, limit: int) -> list[Model]:
    q = select(Model).where(Model.tenant_id == tenant_id).order_by(Model.id).limit(limit)
    if name is not None:
        q = q.where(Model.name == name)
    if after:
        q = q.where(Model.id > after)
    return list(db.scalars(q))


def others_on_dataset(db: Session, dataset_id: uuid.UUID, *, excluding: uuid.UUID) -> list[Model]:
    q = select(Model).where(Model.dataset_id == dataset_id, Model.id != excluding).order_by(Model.id)
    return list(db.scalars(q))


def get_version(db: Session, model_id: uuid.UUID, version: int) -> ModelVersion | None:
    return db.scalar(select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.version == version))


def list_versions(db: Session, model_id: uuid.UUID, *, after: int | None, limit: int) -> list[ModelVersion]:
    q = select(ModelVersion).where(ModelVersion.model_id == model_id).order_by(ModelVersion.version).limit(limit)
    if after is not None:
        q = q.where(ModelVersion.version > after)
    return list(db.scalars(q))


def add_version(db: Session, version: ModelVersion) -> None:
    db.add(version)
    db.flush()
    db.execute(
        update(Model)
        .where(Model.id == version.model_id)
        .values(head_version=version.version, state="READY")
        .execution_options(synchronize_session="fetch")
    )


def set_update_log(db: Session, model_id: uuid.UUID, log_id: uuid.UUID | None) -> None:
    db.execute(
        update(Model)
        .where(Model.id == model_id)
        .values(update_log_id=log_id)
        .execution_options(synchronize_session="fetch")
    )


def active_versions_below(db: Session, model_id: uuid.UUID, version: int) -> list[ModelVersion]:
    return list(
        db.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id == model_id, ModelVersion.version < version, ModelVersion.state == "ACTIVE")
            .order_by(ModelVersion.version)
        )
    )


def versions_due_for_purge(db: Session, now: datetime) -> list[ModelVersion]:
    return list(
        db.scalars(
            select(ModelVersion)
            .where(ModelVersion.purge_after <= now, ModelVersion.purged_at.is_(None))
            .order_by(ModelVersion.purge_after)
            .with_for_update(skip_locked=True)  # two housekeeping passes never purge the same row
        )
    )


def referenced_artifact_keys(db: Session, keys: list[str]) -> set[str]:
    """Which of these keys a version row (of any state) names."""
    if not keys:
        return set()
    return set(db.scalars(select(ModelVersion.artifact_key).where(ModelVersion.artifact_key.in_(keys))))


def live_versions_with_artifact(db: Session, artifact_key: str, *, excluding: uuid.UUID) -> list[ModelVersion]:
    """Versions (of any model) whose file is this one and that still need it."""
    return list(
        db.scalars(
            select(ModelVersion).where(
                ModelVersion.artifact_key == artifact_key,
                ModelVersion.id != excluding,
                ModelVersion.purged_at.is_(None),
                ModelVersion.purge_after.is_(None),
            )
        )
    )
