"""What a submit reads before it decides, in one statement: the answer stored under its idempotency
key, the model and its dataset, and the split of each sample ID it names.

Under load every round trip waits for a CPU twice (the Postgres backend's, then the API thread's
turn at the GIL): in the service benchmark at 50 clients a single-row SELECT of a POST took up to
18 ms (timed per statement, not committed), and a POST held one of the API's two hot-path threads
for all of its round trips. One statement instead of three; the rules stay in the service, which
reads these answers in the order it would have asked the questions (a stored answer is replayed
before the model is looked at). SQLite asks them one by one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, String, and_, any_, bindparam, func, literal, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.datasets import repository as datasets_repo
from app.datasets.tables import Dataset, DatasetSample
from app.db import rows
from app.db.rows import Snapshot
from app.forget_requests import repository
from app.forget_requests.tables import IdempotencyKey
from app.models import repository as models_repo
from app.models.tables import Model


@dataclass
class SubmitLookups:
    stored_answer: Row[Any] | Snapshot | None  # body_sha256, status_code, response, location
    model: Snapshot | None
    dataset: Snapshot | None
    splits: dict[str, str] = field(default_factory=dict)  # sample_id -> split, for the IDs that exist


def submit_lookups(
    db: Session, *, tenant_id: str, key: str, model_id: uuid.UUID, sample_ids: Sequence[str]
) -> SubmitLookups:
    if db.get_bind().dialect.name != "postgresql":
        found = models_repo.get_with_dataset(db, model_id)
        model, dataset = found or (None, None)
        splits = datasets_repo.splits_of(db, dataset.id, sample_ids) if dataset is not None and sample_ids else {}
        return SubmitLookups(repository.get_idempotency(db, tenant_id, key), model, dataset, splits)
    params = {"tenant_id": tenant_id, "key": key, "model_id": model_id, "sample_ids": list(sample_ids)}
    row = db.execute(_LOOKUPS, params).one()
    model, dataset = rows.split(row, _MODEL, _DATASET)
    sha, status, response, location, found_ids, found_splits = row[len(_MODEL.c) + len(_DATASET.c) :]
    stored = None
    if sha is not None:
        stored = Snapshot(body_sha256=sha, status_code=status, response=response, location=location)
    return SubmitLookups(stored, model, dataset, dict(zip(found_ids or [], found_splits or [], strict=True)))


_MODEL, _DATASET, _KEYS, _SAMPLES = (
    Model.__table__,
    Dataset.__table__,
    IdempotencyKey.__table__,
    DatasetSample.__table__,
)
_SPLITS = (
    select(func.array_agg(_SAMPLES.c.sample_id).label("ids"), func.array_agg(_SAMPLES.c.split).label("splits"))
    .where(
        _SAMPLES.c.dataset_id == _MODEL.c.dataset_id,
        _SAMPLES.c.sample_id == any_(bindparam("sample_ids", type_=postgresql.ARRAY(String))),
    )
    .lateral("found")
)
_ONE = select(literal(1).label("one")).subquery("one")
# One row whatever is missing: each part is an outer join from a one-row relation.
_LOOKUPS = (
    select(
        _MODEL,
        _DATASET,
        _KEYS.c.body_sha256,
        _KEYS.c.status_code,
        _KEYS.c.response,
        _KEYS.c.location,
        _SPLITS.c.ids,
        _SPLITS.c.splits,
    )
    .select_from(_ONE)
    .outerjoin(_KEYS, and_(_KEYS.c.tenant_id == bindparam("tenant_id"), _KEYS.c.key == bindparam("key")))
    .outerjoin(_MODEL, _MODEL.c.id == bindparam("model_id"))
    .outerjoin(_DATASET, _DATASET.c.id == _MODEL.c.dataset_id)
    .outerjoin(_SPLITS, true())
)
