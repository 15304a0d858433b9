"""Which erased samples a model still holds because the erasure ran on *another* model.

Tombstones are dataset-wide: an erasure that succeeds on model A marks the samples erased in their
dataset, so they never enter any later training. But model B, trained on the same dataset before
that, still holds them until a forget request is sent for B too. This module answers, for a model,
how many of its dataset's tombstoned samples its head still holds:

- a sample tombstoned before the model's weights were last trained from scratch (its training job,
  or a retrain) was left out of that training: not held;
- a sample in the scope of one of the model's own SUCCEEDED forget requests was unlearned: not held;
- every other tombstoned sample is held (for a model registered with uploaded weights, which the
  service did not train, every tombstoned sample not covered by its own requests).

When an erasure succeeds, every other model of the dataset that holds samples gets one
``model.holds_erased_samples`` audit event per job (see app.jobs.completion), and
``GET /v1/models/{id}/residual-erasures`` answers the count, their hash and the requests that erased
them, so an auditor can follow a subject's data to every model that learned it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.hashing import sha256_of_json
from app.datasets import repository as datasets_repo
from app.forget_requests import repository as requests_repo
from app.jobs import repository as jobs_repo
from app.models import repository
from app.models.tables import Model


@dataclass
class Residual:
    sample_ids: list[str] = field(default_factory=list)
    erased_by_requests: list[uuid.UUID] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.sample_ids)

    @property
    def sha256(self) -> str | None:
        """Stands for the held sample IDs in events and answers (they are never listed there)."""
        return sha256_of_json(sorted(self.sample_ids)) if self.sample_ids else None


def held_erased_samples(db: Session, model: Model) -> Residual:
    if model.head_version is None:
        return Residual()  # no weights yet: nothing held
    trained_from_scratch_at = jobs_repo.last_from_scratch_start(db, model.id)
    rows = datasets_repo.tombstoned_since(db, model.dataset_id, trained_from_scratch_at)
    forgotten_ids: set[str] = set()
    forgotten_labels: set[int] = set()
    for fr in requests_repo.succeeded_of_model(db, model.id):
        (forgotten_ids if fr.scope_type == "sample_ids" else forgotten_labels).update(fr.scope_values)
    held = [r for r in rows if r.sample_id not in forgotten_ids and r.label not in forgotten_labels]
    requests = sorted({r.erased_by_request for r in held if r.erased_by_request is not None})
    return Residual(sample_ids=[r.sample_id for r in held], erased_by_requests=requests)


def record_other_models_holding(
    db: Session, *, model: Model, forget_request_ids: list[uuid.UUID], job_id: uuid.UUID, actor: str
) -> None:
    """After an erasure of ``model`` succeeded: an event on every other model of the dataset that
    still holds erased samples (the tombstones were just written, in this transaction). Once per job,
    over all the requests it served: per request, a coalesced job of 615 requests spent 85 s here."""
    for other in repository.others_on_dataset(db, model.dataset_id, excluding=model.id):
        residual = held_erased_samples(db, other)
        if not residual.count:
            continue
        audit.record(
            db,
            action="model.holds_erased_samples",
            actor=actor,
            tenant_id=other.tenant_id,
            entity_type="model",
            entity_id=other.id,
            model_id=other.id,
            # the erasing request when the job served one; a shared job's requests all name the job
            forget_request_id=forget_request_ids[0] if len(forget_request_ids) == 1 else None,
            job_id=job_id,
            payload={
                "erased_on_model_id": str(model.id),
                "requests": len(forget_request_ids),
                "samples_held": residual.count,
                "held_sha256": residual.sha256,
                "head_version": other.head_version,
            },
        )
