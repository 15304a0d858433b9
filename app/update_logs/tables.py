from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, one_of
from app.db.types import JSONType, UTCDateTime

# A step's state: the engine's names (workers.engine.update_log, not imported: the worker parent
# loads these tables and must not load torch)
LIVE, SUBTRACTED, PURGED = "live", "subtracted", "purged"
STEP_STATES = (LIVE, SUBTRACTED, PURGED)


class UpdateLog(Base):
    """The recorded training updates of one model version (amnesiac unlearning subtracts them)."""

    __tablename__ = "update_logs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # the version whose training it recorded
    job_id: Mapped[uuid.UUID] = mapped_column()
    config: Mapped[dict] = mapped_column(JSONType)
    # [[name, shape], ...] in the model's parameter order (a JSON object would lose the order in JSONB)
    param_shapes: Mapped[list] = mapped_column(JSONType)
    steps_recorded: Mapped[int] = mapped_column(Integer)  # by training; what is left: live update_log_steps
    # the steps still stored (a purge lowers them): their chunk bytes, and as dense fp32 deltas
    dense_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    gradient_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UpdateLogChunk(Base):
    __tablename__ = "update_log_chunks"

    log_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("update_logs.id"), primary_key=True)
    # deltas | gradients; superseded: a file a purge replaced, listed until it is deleted (see purge.py)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)


class UpdateLogStep(Base):
    """One recorded optimiser step (a training batch) and where its delta is stored.

    A step that leaves the log keeps its row, marked with why (``state``): ``subtracted`` (amnesiac
    unlearning subtracted its delta) or ``purged`` (an erasure removed it without subtracting it, so
    the rest of its batch still influences the model). Only ``live`` steps are read as the log."""

    __tablename__ = "update_log_steps"
    __table_args__ = (CheckConstraint(one_of("state", STEP_STATES), name="state"),)

    log_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("update_logs.id"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    chunk_index: Mapped[int] = mapped_column(Integer)
    grad_chunk_index: Mapped[int | None] = mapped_column(Integer)
    sample_count: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), default=LIVE, server_default=LIVE)


class UpdateLogSample(Base):
    """The inverted index: sample ID -> the steps whose batch held it (and its row in that batch).

    Rows stay when their step leaves the log (its state says why), so a sample's purged steps remain
    known; the rows of erased samples themselves are deleted by the purge."""

    __tablename__ = "update_log_samples"
    __table_args__ = (Index("ix_update_log_samples_log_id_step", "log_id", "step"),)

    log_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("update_logs.id"), primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
