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
    num_rows: Mapped[int] = mapped_column(Integer)
    classes: Mapped[list] = mapped_column(JSONType)  # [] for text
    splits: Mapped[dict] = mapped_column(JSONType)
    input_shape: Mapped[list] = mapped_column(JSONType)  # [] for text: a model's context length decides
    x_dtype: Mapped[str] = mapped_column(String(20))  # "text" for text
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DatasetSample(Base):
    """The index of a dataset's rows: which sample ID is which row, its label and split, erasure.

    For a text dataset a row is a document (its line order in the file), with label 0."""

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
