from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from app.audit import repository as audit_repo
from app.datasets.tables import DatasetSample
from app.jobs.states import ACTIVE, QUEUED, SUCCEEDED
from app.jobs.tables import Job
from app.models.tables import Model
from app.update_logs.tables import (
    LIVE,
    STEP_STATES,
    SUBTRACTED,
    UpdateLog,
    UpdateLogChunk,
    UpdateLogSample,
    UpdateLogStep,
)

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


def _live(log_id: uuid.UUID):
    """Join condition: the index row's step, provided it is live (a step that left the log keeps its
    row and index rows, marked subtracted or purged)."""
    return (
        (UpdateLogStep.log_id == UpdateLogSample.log_id)
        & (UpdateLogStep.step == UpdateLogSample.step)
        & (UpdateLogStep.log_id == log_id)
        & (UpdateLogStep.state == LIVE)
    )


def steps_containing(db: Session, log_id: uuid.UUID, sample_ids: Sequence[str]) -> list[int]:
    """Which live steps held any of these samples: one query on the inverted index (per 10k IDs)."""
    found: set[int] = set()
    for start in range(0, len(sample_ids), CHUNK):
        q = (
            select(UpdateLogSample.step)
            .join(UpdateLogStep, _live(log_id))
            .where(UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(sample_ids[start : start + CHUNK]))
        )
        found.update(db.scalars(q))
    return sorted(found)


def steps(db: Session, log_id: uuid.UUID, step_numbers: Sequence[int]) -> list[UpdateLogStep]:
    """These steps' rows, the live ones only."""
    rows: list[UpdateLogStep] = []
    for start in range(0, len(step_numbers), CHUNK):
        q = select(UpdateLogStep).where(
            UpdateLogStep.log_id == log_id,
            UpdateLogStep.state == LIVE,
            UpdateLogStep.step.in_(step_numbers[start : start + CHUNK]),
        )
        rows.extend(db.scalars(q))
    return rows


def positions(
    db: Session, log_id: uuid.UUID, sample_ids: Sequence[str], step_numbers: Sequence[int]
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    wanted = set(step_numbers)
    for start in range(0, len(sample_ids), CHUNK):
        q = (
            select(UpdateLogSample.step, UpdateLogSample.position)
            .join(UpdateLogStep, _live(log_id))
            .where(UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(sample_ids[start : start + CHUNK]))
        )
        out.extend((s, p) for s, p in db.execute(q) if s in wanted)
    return out


def chunks(db: Session, log_id: uuid.UUID) -> list[UpdateLogChunk]:
    """The log's chunk files (deltas, gradients), not those superseded by a purge."""
    q = select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id, UpdateLogChunk.kind != SUPERSEDED)
    return list(db.scalars(q.order_by(UpdateLogChunk.kind, UpdateLogChunk.chunk_index)))


def remaining_steps(db: Session, log_id: uuid.UUID) -> int:
    """Live steps: what the log can still subtract."""
    return step_counts(db, log_id)[LIVE]


def step_counts(db: Session, log_id: uuid.UUID) -> dict[str, int]:
    """Steps per state (every state listed, 0 when none)."""
    q = select(UpdateLogStep.state, func.count()).where(UpdateLogStep.log_id == log_id).group_by(UpdateLogStep.state)
    return {**dict.fromkeys(STEP_STATES, 0), **dict(db.execute(q).all())}


def mark_steps(db: Session, log_id: uuid.UUID, step_numbers: Sequence[int], state: str) -> int:
    """Live steps leave the log as ``state`` (subtracted: never subtracted twice; purged: known to be
    gone without having been subtracted); their rows and index rows stay. Returns steps marked."""
    marked = 0
    for start in range(0, len(step_numbers), CHUNK):
        marked += db.execute(
            update(UpdateLogStep)
            .where(
                UpdateLogStep.log_id == log_id,
                UpdateLogStep.state == LIVE,
                UpdateLogStep.step.in_(step_numbers[start : start + CHUNK]),
            )
            .values(state=state)
            .execution_options(synchronize_session=False)
        ).rowcount
    return marked


def mark_subtracted(db: Session, log_id: uuid.UUID, step_numbers: Sequence[int]) -> int:
    return mark_steps(db, log_id, step_numbers, SUBTRACTED)


# ---- completeness (workers.runner.update_logs.DbUpdateLogReader.step_states) --------------------


def recorded_epochs(db: Session, log_id: uuid.UUID) -> int:
    """Epochs the log recorded (step rows are never deleted)."""
    last = db.scalar(select(func.max(UpdateLogStep.epoch)).where(UpdateLogStep.log_id == log_id))
    return 0 if last is None else last + 1


def step_states(
    db: Session, log_id: uuid.UUID, sample_ids: Sequence[str], epoch: int | None = None
) -> tuple[list[tuple[str, str, int]], list[tuple[int, str]]]:
    """For these samples' recorded steps (of ``epoch`` only, if given): (sample, state, steps) counts,
    and each distinct step with its state. Two queries per 10k IDs."""
    per_sample: list[tuple[str, str, int]] = []
    steps_found: dict[int, str] = {}
    join = (UpdateLogStep.log_id == UpdateLogSample.log_id) & (UpdateLogStep.step == UpdateLogSample.step)
    for start in range(0, len(sample_ids), CHUNK):
        where = [UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(sample_ids[start : start + CHUNK])]
        if epoch is not None:
            where.append(UpdateLogStep.epoch == epoch)
        counts = (
            select(UpdateLogSample.sample_id, UpdateLogStep.state, func.count())
            .join(UpdateLogStep, join)
            .where(*where)
            .group_by(UpdateLogSample.sample_id, UpdateLogStep.state)
        )
        per_sample.extend(tuple(r) for r in db.execute(counts))
        distinct = select(UpdateLogStep.step, UpdateLogStep.state).distinct().join(UpdateLogSample, join).where(*where)
        steps_found.update(tuple(r) for r in db.execute(distinct))
    return per_sample, sorted(steps_found.items())


def erased_samples(db: Session, log_id: uuid.UUID, sample_ids: Sequence[str]) -> set[str]:
    """Those of these samples that are tombstoned in the dataset of the log's model."""
    dataset_id = (
        select(Model.dataset_id).join(UpdateLog, UpdateLog.model_id == Model.id).where(UpdateLog.id == log_id)
    ).scalar_subquery()
    found: set[str] = set()
    for start in range(0, len(sample_ids), CHUNK):
        q = select(DatasetSample.sample_id).where(
            DatasetSample.dataset_id == dataset_id,
            DatasetSample.sample_id.in_(sample_ids[start : start + CHUNK]),
            DatasetSample.erased_at.is_not(None),
        )
        found.update(db.scalars(q))
    return found


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
    return list(db.scalars(select(UpdateLogStep).where(UpdateLogStep.log_id == log_id, UpdateLogStep.state == LIVE)))


def _of_classes(dataset_id: uuid.UUID, labels: Sequence[int]):
    """The training samples of these classes (a class erasure's samples), as a subquery of IDs."""
    return select(DatasetSample.sample_id).where(
        DatasetSample.dataset_id == dataset_id, DatasetSample.split == "train", DatasetSample.label.in_(list(labels))
    )


def steps_with_labels(db: Session, log_id: uuid.UUID, dataset_id: uuid.UUID, labels: Sequence[int]) -> list[int]:
    """Live steps whose batch held a training sample of these classes."""
    q = (
        select(UpdateLogSample.step)
        .distinct()
        .join(UpdateLogStep, _live(log_id))
        .where(UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(_of_classes(dataset_id, labels)))
    )
    return sorted(db.scalars(q))


def delete_sample_rows(db: Session, log_id: uuid.UUID, sample_ids: Sequence[str]) -> int:
    """Delete the erased samples' own index rows, in steps of every state; returns rows deleted."""
    deleted = 0
    for start in range(0, len(sample_ids), CHUNK):
        deleted += db.execute(
            delete(UpdateLogSample)
            .where(UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(sample_ids[start : start + CHUNK]))
            .execution_options(synchronize_session=False)
        ).rowcount
    return deleted


def delete_class_rows(db: Session, log_id: uuid.UUID, dataset_id: uuid.UUID, labels: Sequence[int]) -> int:
    """Delete the index rows of every training sample of these classes; returns rows deleted."""
    q = delete(UpdateLogSample).where(
        UpdateLogSample.log_id == log_id, UpdateLogSample.sample_id.in_(_of_classes(dataset_id, labels))
    )
    return db.execute(q.execution_options(synchronize_session=False)).rowcount


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
