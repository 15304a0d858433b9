from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.update_logs.tables import UpdateLog, UpdateLogChunk, UpdateLogSample, UpdateLogStep

CHUNK = 10_000


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
    return list(db.scalars(select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id)))


def remaining_steps(db: Session, log_id: uuid.UUID) -> int:
    from sqlalchemy import func

    return db.scalar(select(func.count()).select_from(UpdateLogStep).where(UpdateLogStep.log_id == log_id)) or 0


def remove_steps(db: Session, log_id: uuid.UUID, step_numbers: Sequence[int]) -> int:
    """Drop consumed steps from the index so they are never subtracted twice."""
    removed = 0
    for start in range(0, len(step_numbers), CHUNK):
        part = step_numbers[start : start + CHUNK]
        db.execute(
            delete(UpdateLogSample)
            .where(UpdateLogSample.log_id == log_id, UpdateLogSample.step.in_(part))
            .execution_options(synchronize_session=False)
        )
        removed += db.execute(
            delete(UpdateLogStep)
            .where(UpdateLogStep.log_id == log_id, UpdateLogStep.step.in_(part))
            .execution_options(synchronize_session=False)
        ).rowcount
    return removed
