from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.errors import Invalid, NotFound
from app.core.ids import uuid7
from app.core.server_paths import allowed_file, read_allowed
from app.datasets import repository
from app.datasets.builtin import BUILTIN, digits_arrays
from app.datasets.tables import Dataset
from app.db.types import utcnow
from app.settings import get_settings
from app.storage import get_artifact_store
from workers.engine.datasets import (
    ArrayDataset,
    DatasetFormatError,
    parse_npz,
    to_npz_bytes,
    validate_arrays,
)
from workers.engine.holdout import role_counts
from workers.engine.text import MAX_JSONL_BYTES, TextDataset, parse_jsonl

TEXT_SUFFIXES = (".jsonl", ".ndjson")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip (the second: an empty one)


def get_dataset(db: Session, dataset_id: uuid.UUID, *, tenant_id: str) -> Dataset:
    """The dataset, if it is this tenant's: another tenant's is as absent as a missing one (404)."""
    ds = repository.get(db, dataset_id)
    if ds is None or ds.tenant_id != tenant_id:
        raise NotFound("dataset", dataset_id)
    return ds


def file_format(filename: str | None, data: bytes) -> str:
    """``arrays`` or ``text``: by the file name's suffix (.npz, .jsonl), else by the content (a zip
    archive, or a first line that opens a JSON object); 422 when neither tells."""
    suffix = Path(filename or "").suffix.lower()
    if suffix == ".npz":
        return "arrays"
    if suffix in TEXT_SUFFIXES:
        return "text"
    if data.startswith(ZIP_MAGIC):
        return "arrays"
    if data.lstrip()[:1] == b"{":
        return "text"
    raise Invalid(
        "the file is neither an .npz (arrays ids, x, y, optional split) nor JSON Lines (one "
        '{"id": ..., "text": ...} object per line); name it .npz or .jsonl',
        slug="invalid-dataset",
        title="Unknown dataset format",
    )


def register_upload(
    db: Session, *, name: str, data: bytes, filename: str | None, tenant_id: str, actor: str, source: str = "upload"
) -> Dataset:
    if file_format(filename, data) == "text":
        docs = _parsed(parse_jsonl, data)
        return _register_text(db, docs, data, name=name, source=source, tenant_id=tenant_id, actor=actor)
    arrays = _parsed(partial(parse_npz, max_bytes=get_settings().max_dataset_bytes), data)
    return _register(db, arrays, name=name, source=source, tenant_id=tenant_id, actor=actor)


def register_server_path(db: Session, *, name: str, path: str, tenant_id: str, actor: str) -> Dataset:
    """A file already on the server, under an allowed root: its content is copied into the artifact
    store (content-addressed), so later changes to the file do not change the dataset."""
    resolved = allowed_file(path, field="server_path", tenant_id=tenant_id)
    data = read_allowed(resolved, field="server_path", max_bytes=max(MAX_JSONL_BYTES, get_settings().max_upload_bytes))
    return register_upload(
        db, name=name, data=data, filename=resolved.name, tenant_id=tenant_id, actor=actor, source="server_path"
    )


def _parsed(parse, data: bytes):
    """The parser's result; its format errors (which name the line, never echo document text) -> 422."""
    try:
        return parse(data)
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


def register_builtin(db: Session, *, builtin: str, name: str | None, tenant_id: str, actor: str) -> Dataset:
    if builtin not in BUILTIN:
        raise Invalid(f"unknown built-in dataset {builtin!r}; available: {', '.join(BUILTIN)}")
    arrays = validate_arrays(**digits_arrays())
    return _register(db, arrays, name=name or builtin, source=f"builtin:{builtin}", tenant_id=tenant_id, actor=actor)


def _register(db: Session, arrays: ArrayDataset, *, name: str, source: str, tenant_id: str, actor: str) -> Dataset:
    # Stored normalised (splits spelled out), so the worker reads exactly what was validated here.
    return _store_and_index(
        db,
        to_npz_bytes(arrays),
        ".npz",
        ids=arrays.ids,
        labels=arrays.y,
        split=arrays.split,
        name=name,
        source=source,
        tenant_id=tenant_id,
        actor=actor,
        format="arrays",
        classes=arrays.classes,
        splits=arrays.split_counts(),
        input_shape=list(arrays.input_shape),
        x_dtype=str(arrays.x.dtype),
    )


def _register_text(
    db: Session, docs: TextDataset, data: bytes, *, name: str, source: str, tenant_id: str, actor: str
) -> Dataset:
    # Stored as sent: the worker parses the same bytes the same way (a missing split is a stable hash).
    return _store_and_index(
        db,
        data,
        ".jsonl",
        ids=docs.ids,
        labels=np.zeros(len(docs), dtype=np.int64),  # documents have no class
        split=docs.split,
        name=name,
        source=source,
        tenant_id=tenant_id,
        actor=actor,
        format="text",
        classes=[],
        splits=docs.split_counts(),
        input_shape=[],
        x_dtype="text",
    )


def _store_and_index(
    db: Session,
    data: bytes,
    suffix: str,
    *,
    ids: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    name: str,
    source: str,
    tenant_id: str,
    actor: str,
    **described,
) -> Dataset:
    """Store the file, add the dataset row with one index row per sample/document, audit it."""
    stored = get_artifact_store().put_bytes(data, kind="datasets", suffix=suffix)
    described.setdefault("holdout_roles", role_counts(ids[split != "train"].tolist()))
    ds = Dataset(
        id=uuid7(),
        tenant_id=tenant_id,
        name=name,
        source=source,
        artifact_key=stored.key,
        sha256=stored.sha256,
        size_bytes=stored.size,
        num_rows=len(ids),
        rows_in_file=len(ids),
        created_at=utcnow(),
        **described,
    )
    repository.add(db, ds, ids, labels, split)
    _audit_registered(db, ds, actor)
    return ds


def _audit_registered(db: Session, ds: Dataset, actor: str) -> None:
    audit.record(
        db,
        action="dataset.registered",
        actor=actor,
        tenant_id=ds.tenant_id,
        entity_type="dataset",
        entity_id=ds.id,
        payload={
            "name": ds.name,
            "source": ds.source,
            "format": ds.format,
            "sha256": ds.sha256,
            "rows": ds.num_rows,
            "classes": len(ds.classes),
            "splits": ds.splits,
            "holdout_roles": {k: ds.holdout_roles[k] for k in ("calibration", "evaluation")},
        },
    )


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


def check_held_out_samples(db: Session, dataset: Dataset, sample_ids: Sequence[str], *, field: str) -> None:
    """422 unless every ID is a held-out (test or val) sample of the dataset: data the model never saw."""
    splits = repository.splits_of(db, dataset.id, sample_ids)
    unknown = [s for s in sample_ids if s not in splits]
    trained = [s for s in sample_ids if splits.get(s) == "train"]
    if unknown or trained:
        raise Invalid(
            f"{field} must name held-out (test or val) samples of dataset {dataset.id}: "
            f"{len(unknown)} unknown, {len(trained)} in the training split",
            title="Not held-out samples",
            unknown_sample_ids=unknown[:100],
            training_sample_ids=trained[:100],
        )


def erase(db: Session, dataset_id: uuid.UUID, *, scope_type: str, values: list, request_id: uuid.UUID) -> int:
    """Tombstone what a successful erasure removed, and mark the stored file for the rewrite that
    removes those rows from it (app/datasets/file_erasure.py); returns rows newly tombstoned."""
    now = utcnow()
    if scope_type == "sample_ids":
        rows = repository.erase_samples(db, dataset_id, values, request_id=request_id, now=now)
    else:
        rows = repository.erase_classes(db, dataset_id, values, request_id=request_id, now=now)
    if rows:
        repository.mark_file_rewrite_due(db, dataset_id, now)
    return rows


def erased_sample_ids(db: Session, dataset_id: uuid.UUID) -> list[str]:
    return repository.erased_sample_ids(db, dataset_id)
