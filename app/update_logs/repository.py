from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session

from app.audit import repository as audit_repo
from app.datasets.tables import DatasetSample
from app.jobs.states import ACTIVE, QUEUED, SUCCEEDED
from app.jobs.tables import Job
from app.update_logs.tables import UpdateLog, UpdateLogChunk, UpdateLogSample, UpdateLogStep

CHUNK = 10_000
# A chunk file replaced by a purge's rewrite stays listed as a row of this kind (with its own running
# chunk_index) from the rewrite's commit until the file is deleted: the list of pending deletions.
SUPERSEDED = "superseded"


def get(db: Session, log_id: uuid.UUID) -> UpdateLog | None:
    return db.get(UpdateLog, log_id)


def add(db: Session, log: UpdateLog, chunks: list[dict], steps: list[dict], samples: list[dict]) -> None:
    db.add(log)
    db.flush()
    for table, rows in ((UpdateLogChunk, chunks), (UpdateLogStep, steps), (UpdateLogSample, samples)):
        for start in range(0, len(rows), CHUNK):
            db.execute(insert(table), rows[start : start + CHUNK])


def steps_containing(db: Session, log_id: uuid.UUID, sample_ids: Sequence[str]) -> list[int]:
    """Which recorded steps held any of these samples: one query on the inverted index (per 10k IDs)."""
    found: set[int] = set()
    for start in range(0, len(sample_ids), CHUNK):
        q = select(UpdateLogSample.step).where(
            UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(sample_ids[start : start + CHUNK])
        )
        found.update(db.scalars(q))
    return sorted(found)


def steps(db: Session, log_id: uuid.UUID, step_numbers: Sequence[int]) -> list[UpdateLogStep]:
    rows: list[UpdateLogStep] = []
    for start in range(0, len(step_numbers), CHUNK):
        q = select(UpdateLogStep).where(
            UpdateLogStep.log_id == log_id, UpdateLogStep.step.in_(step_numbers[start : start + CHUNK])
        )
        rows.extend(db.scalars(q))
    return rows


def positions(
    db: Session, log_id: uuid.UUID, sample_ids: Sequence[str], step_numbers: Sequence[int]
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    wanted = set(step_numbers)
    for start in range(0, len(sample_ids), CHUNK):
        q = select(UpdateLogSample.step, UpdateLogSample.position).where(
            UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(sample_ids[start : start + CHUNK])
        )
        out.extend((s, p) for s, p in db.execute(q) if s in wanted)
    return out


def chunks(db: Session, log_id: uuid.UUID) -> list[UpdateLogChunk]:
    """The log's chunk files (deltas, gradients), not those superseded by a purge."""
    q = select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id, UpdateLogChunk.kind != SUPERSEDED)
    return list(db.scalars(q.order_by(UpdateLogChunk.kind, UpdateLogChunk.chunk_index)))


def remaining_steps(db: Session, log_id: uuid.UUID) -> int:
    return db.scalar(select(func.count()).select_from(UpdateLogStep).where(UpdateLogStep.log_id == log_id)) or 0


def remove_steps(db: Session, log_id: uuid.UUID, step_numbers: Sequence[int]) -> int:
    """Drop consumed steps from the index so they are never subtracted twice."""
    return delete_steps(db, log_id, step_numbers)[0]


def delete_steps(db: Session, log_id: uuid.UUID, step_numbers: Sequence[int]) -> tuple[int, int]:
    """Delete the steps' rows and their inverted-index rows; returns (steps, sample rows) deleted."""
    steps_deleted = samples_deleted = 0
    for start in range(0, len(step_numbers), CHUNK):
        part = step_numbers[start : start + CHUNK]
        samples_deleted += db.execute(
            delete(UpdateLogSample)
            .where(UpdateLogSample.log_id == log_id, UpdateLogSample.step.in_(part))
            .execution_options(synchronize_session=False)
        ).rowcount
        steps_deleted += db.execute(
            delete(UpdateLogStep)
            .where(UpdateLogStep.log_id == log_id, UpdateLogStep.step.in_(part))
            .execution_options(synchronize_session=False)
        ).rowcount
    return steps_deleted, samples_deleted


# ---- the purge (app.update_logs.purge) ----------------------------------------------------------


def logs_of_model(db: Session, model_id: uuid.UUID, *, lock: bool = False) -> list[UpdateLog]:
    """Every log of the model, the current one and those of earlier versions (a retrain detaches one)."""
    q = select(UpdateLog).where(UpdateLog.model_id == model_id).order_by(UpdateLog.id)
    return list(db.scalars(q.with_for_update() if lock else q))


def lock_unfinished_jobs(db: Session, model_id: uuid.UUID) -> list[str]:
    """Lock the model's QUEUED and active jobs until this transaction ends (a claim, QUEUED ->
    RUNNING, waits for it) and return their states."""
    q = (
        select(Job.state)
        .where(Job.model_id == model_id, Job.state.in_((QUEUED, *ACTIVE)))
        .order_by(Job.id)
        .with_for_update()
    )
    return list(db.scalars(q))


def purge_recorded(db: Session, job_id: uuid.UUID, action: str) -> bool:
    return bool(db.scalar(select(audit_repo.recorded(job_id, action))))


def jobs_pending_purge(db: Session, action: str, *, limit: int) -> list[uuid.UUID]:
    """Succeeded erasures of models that have an update log, oldest first, whose purge has no audit
    event yet (the event is written in the purge's own transaction)."""
    q = (
        select(Job.id)
        .where(
            Job.kind == "unlearn",
            Job.state == SUCCEEDED,
            exists().where(UpdateLog.model_id == Job.model_id),
            ~audit_repo.recorded(Job.id, action),
        )
        .order_by(Job.finished_at, Job.id)
        .limit(limit)
    )
    return list(db.scalars(q))


def live_steps(db: Session, log_id: uuid.UUID) -> list[UpdateLogStep]:
    return list(db.scalars(select(UpdateLogStep).where(UpdateLogStep.log_id == log_id)))


def steps_with_labels(db: Session, log_id: uuid.UUID, dataset_id: uuid.UUID, labels: Sequence[int]) -> list[int]:
    """Steps whose batch held a training sample of these classes (a class erasure's samples)."""
    q = (
        select(UpdateLogSample.step)
        .distinct()
        .join(
            DatasetSample,
            (DatasetSample.dataset_id == dataset_id) & (DatasetSample.sample_id == UpdateLogSample.sample_id),
        )
        .where(UpdateLogSample.log_id == log_id, DatasetSample.split == "train", DatasetSample.label.in_(list(labels)))
    )
    return sorted(db.scalars(q))


def supersede(db: Session, chunk: UpdateLogChunk) -> None:
    """List the chunk's current file for deletion after commit (a row of kind SUPERSEDED)."""
    last = db.scalar(
        select(func.max(UpdateLogChunk.chunk_index)).where(
            UpdateLogChunk.log_id == chunk.log_id, UpdateLogChunk.kind == SUPERSEDED
        )
    )
    db.add(
        UpdateLogChunk(
            log_id=chunk.log_id,
            kind=SUPERSEDED,
            chunk_index=(last or 0) + 1,
            artifact_key=chunk.artifact_key,
            sha256=chunk.sha256,
            size_bytes=chunk.size_bytes,
        )
    )
    db.flush()


def delete_chunk(db: Session, chunk: UpdateLogChunk) -> None:
    db.delete(chunk)
    db.flush()


def superseded(db: Session, *, limit: int = 1000) -> list[UpdateLogChunk]:
    """Files waiting for deletion, locked; rows another pass is deleting right now are skipped."""
    q = select(UpdateLogChunk).where(UpdateLogChunk.kind == SUPERSEDED)
    q = q.order_by(UpdateLogChunk.log_id, UpdateLogChunk.chunk_index).limit(limit)
    return list(db.scalars(q.with_for_update(skip_locked=True)))


def key_in_use(db: Session, artifact_key: str) -> bool:
    """Whether a chunk of any log still reads this file (keys are content addressed: two logs may
    hold byte-identical chunks)."""
    q = select(UpdateLogChunk.log_id).where(
        UpdateLogChunk.artifact_key == artifact_key, UpdateLogChunk.kind != SUPERSEDED
    )
    return db.scalar(q.limit(1)) is not None
