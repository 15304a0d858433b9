from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    source: str = Field(description="upload, server_path or builtin:<name>.")
    format: Literal["arrays", "text"] = Field(
        description="arrays: an .npz of inputs and labels (classifiers); text: JSON Lines documents (language models)."
    )
    num_rows: int = Field(description="Samples (for text, documents) as registered; erasures do not change it.")
    rows_in_file: int = Field(
        description="Samples (documents) the stored file holds now: once an erasure succeeds, the tombstoned "
        "rows leave the file, which is rewritten (sha256 and size_bytes describe the current file)."
    )
    classes: list[int] = Field(description="The labels present; empty for text.")
    splits: dict[str, int]
    holdout_roles: dict[str, Any] | None = Field(
        None,
        description="The held-out rows (test and val) by role: calibration (methods may read them) and evaluation "
        "(only verification and reported test figures read them), by a stable hash of the sample ID.",
    )
    input_shape: list[int] = Field(description="One sample's shape; empty for text (a model's context length decides).")
    x_dtype: str = Field(description="The inputs' dtype; 'text' for text.")
    sha256: str
    size_bytes: int
    created_at: datetime
