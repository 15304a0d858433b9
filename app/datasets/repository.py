from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import String, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.datasets.tables import Dataset, DatasetSample
from app.jobs.states import ACTIVE, QUEUED
from app.jobs.tables import Job
from app.models.tables import Model

CHUNK = 10_000  # bound on bind parameters per statement (psycopg and SQLite both have limits)


def get(db: Session, dataset_id: uuid.UUID) -> Dataset | None:
    return db.get(Dataset, dataset_id)


def add(db: Session, dataset: Dataset, ids: np.ndarray, labels: np.ndarray, split: np.ndarray) -> None:
    db.add(dataset)
    db.flush()
    for start in range(0, len(ids), CHUNK):
        rows = [
            {"dataset_id": dataset.id, "row_index": i, "sample_id": sid, "label": int(lab), "split": str(sp)}
            for i, sid, lab, sp in zip(
                range(start, start + CHUNK),
                ids[start : start + CHUNK].tolist(),
                labels[start : start + CHUNK].tolist(),
                split[start : start + CHUNK].tolist(),
                strict=False,
            )
        ]
        db.execute(insert(DatasetSample), rows)


def list_datasets(db: Session, *, tenant_id: str, after: uuid.UUID | None, limit: int) -> list[Dataset]:
    q = select(Dataset).where(Dataset.tenant_id == tenant_id).order_by(Dataset.id).limit(limit)
    if after:
        q = q.where(Dataset.id > after)
    return list(db.scalars(q))


def splits_of(db: Session, dataset_id: uuid.UUID, sample_ids: Sequence[str]) -> dict[str, str]:
    """sample_id -> split, for the IDs that exist."""
    postgres = db.get_bind().dialect.name == "postgresql"
    found: dict[str, str] = {}
    for start in range(0, len(sample_ids), CHUNK):
        chunk = list(sample_ids[start : start + CHUNK])
        if postgres:  # one array parameter: the statement is the same whatever the count, so compiled once
            rows = db.execute(_SPLITS_ANY, {"dataset_id": dataset_id, "ids": chunk})
        else:
            rows = db.execute(_SPLITS.where(DatasetSample.sample_id.in_(chunk)), {"dataset_id": dataset_id})
        found.update((sample_id, split) for sample_id, split in rows)
    return found


# A submit checks its sample IDs with this (its hot path): an IN list is expanded and its SQL
# rewritten on every execution, which cost a submit 0.7 ms of the API's CPU for one ID (measured).
_SPLITS = select(DatasetSample.sample_id, DatasetSample.split).where(
    DatasetSample.dataset_id == bindparam("dataset_id")
)
_SPLITS_ANY = _SPLITS.where(DatasetSample.sample_id == any_(bindparam("ids", type_=postgresql.ARRAY(String))))


def erased_sample_ids(db: Session, dataset_id: uuid.UUID) -> list[str]:
    """The dataset's tombstoned sample IDs (by ID: ``row_index`` is no position in a rewritten file)."""
    q = select(DatasetSample.sample_id).where(
        DatasetSample.dataset_id == dataset_id, DatasetSample.erased_at.is_not(None)
    )
    return list(db.scalars(q))


def tombstoned_since(db: Session, dataset_id: uuid.UUID, since: datetime | None) -> list[DatasetSample]:
    """The dataset's tombstoned rows, only those tombstoned after ``since`` when it is given."""
    q = select(DatasetSample).where(DatasetSample.dataset_id == dataset_id, DatasetSample.erased_at.is_not(None))
    if since is not None:
        q = q.where(DatasetSample.erased_at > since)
    return list(db.scalars(q))


def erase_samples(
    db: Session, dataset_id: uuid.UUID, sample_ids: Sequence[str], *, request_id: uuid.UUID, now: datetime
) -> int:
    n = 0
    for start in range(0, len(sample_ids), CHUNK):
        n += db.execute(
            update(DatasetSample)
            .where(
                DatasetSample.dataset_id == dataset_id,
                DatasetSample.erased_at.is_(None),
                DatasetSample.sample_id.in_(sample_ids[start : start + CHUNK]),
            )
            .values(erased_at=now, erased_by_request=request_id)
            .execution_options(synchronize_session=False)
        ).rowcount
    return n


def erase_classes(
    db: Session, dataset_id: uuid.UUID, labels: Iterable[int], *, request_id: uuid.UUID, now: datetime
) -> int:
    """Tombstone the training rows of these classes (test rows stay: they measure the forgetting)."""
    return db.execute(
        update(DatasetSample)
        .where(
            DatasetSample.dataset_id == dataset_id,
            DatasetSample.erased_at.is_(None),
            DatasetSample.split == "train",
            DatasetSample.label.in_(list(labels)),
        )
        .values(erased_at=now, erased_by_request=request_id)
        .execution_options(synchronize_session=False)
    ).rowcount


def mark_file_rewrite_due(db: Session, dataset_id: uuid.UUID, now: datetime) -> None:
    """Unconditional, so it waits for a rewrite holding the row and marks again after it (a rewrite
    that started before these tombstones were committed did not remove them)."""
    db.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id)
        .values(file_rewrite_due_at=func.coalesce(Dataset.file_rewrite_due_at, now))
        .execution_options(synchronize_session=False)
    )


def due_for_file_rewrite(db: Session, *, limit: int) -> list[uuid.UUID]:
    q = (
        select(Dataset.id)
        .where(Dataset.file_rewrite_due_at.is_not(None))
        .order_by(Dataset.file_rewrite_due_at)
        .limit(limit)
    )
    return list(db.scalars(q))


def lock(db: Session, dataset_id: uuid.UUID) -> Dataset | None:
    """The row, locked until the commit, as it is now (not as this session last saw it)."""
    q = select(Dataset).where(Dataset.id == dataset_id).with_for_update()
    return db.scalars(q.execution_options(populate_existing=True)).one_or_none()


def with_superseded_file(db: Session, *, limit: int = 100) -> list[Dataset]:
    """Datasets whose replaced file waits for deletion; rows another pass holds are skipped."""
    q = select(Dataset).where(Dataset.superseded_artifact_key.is_not(None)).order_by(Dataset.id).limit(limit)
    return list(db.scalars(q.with_for_update(skip_locked=True).execution_options(populate_existing=True)))


def datasets_naming(db: Session, artifact_key: str) -> int:
    """How many datasets read this file now (content-addressed: identical bytes share one key)."""
    return db.scalar(select(func.count()).select_from(Dataset).where(Dataset.artifact_key == artifact_key))


def erasures_in_flight(db: Session, dataset_id: uuid.UUID, *, created_by: datetime) -> int:
    """Unfinished unlearn jobs of the dataset's models created by then: requests sent together with
    the erasure (for other models of the dataset), which may still need the rows' data."""
    q = (
        select(func.count())
        .select_from(Job)
        .join(Model, Model.id == Job.model_id)
        .where(
            Model.dataset_id == dataset_id,
            Job.kind == "unlearn",
            Job.state.in_((QUEUED, *ACTIVE)),
            Job.created_at <= created_by,
        )
    )
    return db.scalar(q)
