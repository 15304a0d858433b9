from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, one_of
from app.db.types import JSONType, UTCDateTime

FORMATS = ("arrays", "text")  # an .npz of arrays (classifiers); JSON Lines documents (language models)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (CheckConstraint(one_of("format", FORMATS), name="format"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(50))  # "upload", "server_path" or "builtin:<name>"
    format: Mapped[str] = mapped_column(String(10), server_default="arrays")
    artifact_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    num_rows: Mapped[int] = mapped_column(Integer)  # as registered; erasures do not change it
    classes: Mapped[list] = mapped_column(JSONType)  # [] for text
    splits: Mapped[dict] = mapped_column(JSONType)
    input_shape: Mapped[list] = mapped_column(JSONType)  # [] for text: a model's context length decides
    x_dtype: Mapped[str] = mapped_column(String(20))  # "text" for text
    # held-out rows per role (workers/engine/holdout.py): calibration (methods) / evaluation (the gate)
    holdout_roles: Mapped[dict | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # No residual copies (app/datasets/file_erasure.py): the rows the stored file holds now; set when
    # an erasure tombstoned rows the file still holds; the file a committed rewrite replaced, until deleted
    rows_in_file: Mapped[int | None] = mapped_column(Integer)
    file_rewrite_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    superseded_artifact_key: Mapped[str | None] = mapped_column(String(300))


class DatasetSample(Base):
    """The index of a dataset's rows: which sample ID is which row, its label and split, erasure.

    For a text dataset a row is a document (its line order in the file), with label 0. ``row_index``
    is the position in the file as registered: erased rows later leave the stored file and the rows
    after them move up, so never read the current file by it; find rows there by ``sample_id``."""

    __tablename__ = "dataset_samples"
    __table_args__ = (Index("ix_dataset_samples_dataset_id_sample_id", "dataset_id", "sample_id", unique=True),)

    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(200))
    label: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(10))
    # tombstone: set when an erasure succeeded; the row never again enters training
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    erased_by_request: Mapped[uuid.UUID | None] = mapped_column()
