from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.errors import Invalid, NotFound
from app.core.ids import uuid7
from app.datasets import repository
from app.datasets.builtin import BUILTIN, digits_arrays
from app.datasets.tables import Dataset
from app.db.types import utcnow
from app.storage import get_artifact_store
from workers.engine.datasets import ArrayDataset, DatasetFormatError, parse_npz, to_npz_bytes, validate_arrays


def get_dataset(db: Session, dataset_id: uuid.UUID, *, tenant_id: str) -> Dataset:
    """The dataset, if it is this tenant's: another tenant's is as absent as a missing one (404)."""
    ds = repository.get(db, dataset_id)
    if ds is None or ds.tenant_id != tenant_id:
        raise NotFound("dataset", dataset_id)
    return ds


def register_upload(db: Session, *, name: str, data: bytes, tenant_id: str, actor: str) -> Dataset:
    try:
        arrays = parse_npz(data)
    except DatasetFormatError as exc:
        if exc.duplicates:
            raise Invalid(
                str(exc),
                slug="duplicate-sample-ids",
                title="Duplicate sample IDs",
                duplicate_sample_ids=exc.duplicates,
                duplicate_count=exc.duplicate_count,
            ) from None
        raise Invalid(str(exc), slug="invalid-dataset", title="Invalid dataset file") from None
    return _register(db, arrays, name=name, source="upload", tenant_id=tenant_id, actor=actor)


def register_builtin(db: Session, *, builtin: str, name: str | None, tenant_id: str, actor: str) -> Dataset:
    if builtin not in BUILTIN:
        raise Invalid(f"unknown built-in dataset {builtin!r}; available: {', '.join(BUILTIN)}")
    arrays = validate_arrays(**digits_arrays())
    return _register(db, arrays, name=name or builtin, source=f"builtin:{builtin}", tenant_id=tenant_id, actor=actor)


def _register(db: Session, arrays: ArrayDataset, *, name: str, source: str, tenant_id: str, actor: str) -> Dataset:
    # Stored normalised (splits spelled out), so the worker reads exactly what was validated here.
    stored = get_artifact_store().put_bytes(to_npz_bytes(arrays), kind="datasets", suffix=".npz")
    ds = Dataset(
        id=uuid7(),
        tenant_id=tenant_id,
        name=name,
        source=source,
        artifact_key=stored.key,
        sha256=stored.sha256,
        size_bytes=stored.size,
        num_rows=len(arrays),
        classes=arrays.classes,
        splits=arrays.split_counts(),
        input_shape=list(arrays.input_shape),
        x_dtype=str(arrays.x.dtype),
        created_at=utcnow(),
    )
    repository.add(db, ds, arrays.ids, arrays.y, arrays.split)
    audit.record(
        db,
        action="dataset.registered",
        actor=actor,
        tenant_id=tenant_id,
        entity_type="dataset",
        entity_id=ds.id,
        payload={
            "name": name,
            "source": source,
            "sha256": stored.sha256,
            "rows": len(arrays),
            "classes": len(ds.classes),
            "splits": ds.splits,
        },
    )
    return ds


def check_forget_samples(db: Session, dataset: Dataset, sample_ids: Sequence[str]) -> None:
    """422 if any ID is not a training sample of the dataset (unknown ones listed, first 100)."""
    splits = repository.splits_of(db, dataset.id, sample_ids)
    unknown = [s for s in sample_ids if s not in splits]
    if unknown:
        raise Invalid(
            f"{len(unknown)} of {len(sample_ids)} sample IDs are not in dataset {dataset.id}; nothing was queued",
            slug="unknown-sample-ids",
            title="Unknown sample IDs",
            unknown_sample_ids=unknown[:100],
            unknown_count=len(unknown),
        )
    untrained = [s for s in sample_ids if splits[s] != "train"]
    if untrained:
        raise Invalid(
            f"{len(untrained)} sample IDs are in the {splits[untrained[0]]!r} split, not 'train': "
            "the model never learned from them; nothing was queued",
            slug="not-training-samples",
            title="Not training samples",
            sample_ids=untrained[:100],
            count=len(untrained),
        )


def erase(db: Session, dataset_id: uuid.UUID, *, scope_type: str, values: list, request_id: uuid.UUID) -> int:
    """Tombstone what a successful erasure removed; returns rows newly tombstoned."""
    now = utcnow()
    if scope_type == "sample_ids":
        return repository.erase_samples(db, dataset_id, values, request_id=request_id, now=now)
    return repository.erase_classes(db, dataset_id, values, request_id=request_id, now=now)


def erased_row_indices(db: Session, dataset_id: uuid.UUID) -> np.ndarray:
    return np.asarray(repository.erased_rows(db, dataset_id), dtype=np.int64)
