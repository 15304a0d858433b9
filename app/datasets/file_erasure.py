"""No residual copies, datasets: the rows an erasure tombstoned leave the service's stored copy of the
dataset too.

- :func:`app.datasets.service.erase`, in the erasure's own transaction, marks the dataset
  ``file_rewrite_due_at``.
- :func:`rewrite` (a transaction of its own: the worker runs it right after the erasure commits, and
  every periodic pass runs it for what is still due) reads the stored file and writes a new
  content-addressed one without every tombstoned row of the dataset (an .npz: the same arrays minus
  those rows; JSON Lines: the other lines byte for byte, see workers/engine/stored_datasets.py),
  points the dataset row at it (``artifact_key``, ``sha256``, ``size_bytes``, ``rows_in_file``),
  lists the old file in ``superseded_artifact_key`` and records ``dataset.rows_erased_from_file``
  (counts, old and new sha256 and sizes; never sample IDs or data).
- :func:`delete_superseded`, once that has committed, deletes the old file unless another dataset
  row names the same bytes (content addressing: identical uploads share one file), and records
  ``dataset.file_deleted``. A crash between the commit and the deletion leaves the key listed; the
  next pass deletes it. A failed commit loses nothing: the old file is still the dataset's, and the
  new one, written deterministically, is the same key again on the retry.

``num_rows``, ``splits`` and ``dataset_samples.row_index`` stay as registered; the worker finds the
erased rows by sample ID in the file it reads (workers/runner/inputs.py).

The rewrite waits while an unlearn job of a model of the dataset, created before the tombstones,
is unfinished: requests for the same samples on other models, sent together, may need their data.
Jobs created later never delay it (only a method that needs no forget data, such as ``retrain``,
serves samples whose rows have left the file: workers/runner/inputs.py).

Concurrency: the rewrite locks the dataset row; an erasure's transaction updates it, so it waits for
a rewrite in progress and marks the row due again after it. A job that read the old key just before
the old file was deleted reads the dataset row again (workers/runner/inputs.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.datasets import repository
from app.datasets.tables import Dataset
from app.storage import ArtifactStore
from workers.engine.stored_datasets import jsonl_without, npz_without

REWRITTEN = "dataset.rows_erased_from_file"
FILE_DELETED = "dataset.file_deleted"
SUFFIX = {"arrays": ".npz", "text": ".jsonl"}


@dataclass(frozen=True)
class Rewrite:
    dataset_id: uuid.UUID
    rows_removed: int
    rows_in_file: int


def due(db: Session, *, limit: int) -> list[uuid.UUID]:
    return repository.due_for_file_rewrite(db, limit=limit)


def rewrite(db: Session, store: ArtifactStore, *, dataset_id: uuid.UUID, actor: str) -> Rewrite | None:
    """Remove every tombstoned row from the dataset's stored file, if it is due; the caller commits,
    then calls :func:`delete_superseded`. None when there was nothing to do, or it has to wait."""
    ds = repository.lock(db, dataset_id)
    if ds is None or ds.file_rewrite_due_at is None:  # another pass did it meanwhile
        return None
    if repository.erasures_in_flight(db, ds.id, created_by=ds.file_rewrite_due_at):
        return None  # they may need the rows' data; the last one's success (or a periodic pass) does it
    if ds.superseded_artifact_key:  # an earlier rewrite committed, and its deletion never ran
        _delete_file(db, store, ds, actor)
    erased = repository.erased_sample_ids(db, ds.id)  # read under the lock: every committed tombstone
    data = store.read_verified(ds.artifact_key, ds.sha256)
    out = (jsonl_without if ds.format == "text" else npz_without)(data, erased)
    ds.file_rewrite_due_at = None
    if out.rows_removed == 0:  # they had left the file already
        db.flush()
        return None
    stored = store.put_bytes(out.data, kind="datasets", suffix=SUFFIX[ds.format])
    old_sha256, old_size = ds.sha256, ds.size_bytes
    ds.superseded_artifact_key = ds.artifact_key
    ds.artifact_key, ds.sha256, ds.size_bytes, ds.rows_in_file = stored.key, stored.sha256, stored.size, out.rows_kept
    audit.record(
        db,
        action=REWRITTEN,
        actor=actor,
        tenant_id=ds.tenant_id,
        entity_type="dataset",
        entity_id=ds.id,
        payload={
            "format": ds.format,
            "rows_removed": out.rows_removed,
            "rows_in_file": out.rows_kept,
            "rows_tombstoned": len(erased),
            "rows_registered": ds.num_rows,
            "old_sha256": old_sha256,
            "new_sha256": stored.sha256,
            "old_size_bytes": old_size,
            "new_size_bytes": stored.size,
        },
    )
    db.flush()
    return Rewrite(ds.id, out.rows_removed, out.rows_kept)


def delete_superseded(db: Session, store: ArtifactStore, *, actor: str) -> int:
    """Delete the files committed rewrites replaced; the caller commits. Returns files deleted."""
    return sum(_delete_file(db, store, ds, actor) for ds in repository.with_superseded_file(db))


def _delete_file(db: Session, store: ArtifactStore, ds: Dataset, actor: str) -> bool:
    """The file goes first, then the row says so: a failed commit only makes the next pass find it
    already absent."""
    key = ds.superseded_artifact_key
    if repository.datasets_naming(db, key):
        status = "kept: another dataset holds the same bytes"
    elif store.delete(key):
        status = "deleted"
    else:
        status = "already absent"
    ds.superseded_artifact_key = None
    audit.record(
        db,
        action=FILE_DELETED,
        actor=actor,
        tenant_id=ds.tenant_id,
        entity_type="dataset",
        entity_id=ds.id,
        payload={"sha256": PurePosixPath(key).name.split(".")[0], "file": status},
    )
    db.flush()
    return status == "deleted"
