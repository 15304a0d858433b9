from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    source: str = Field(description="upload, server_path or builtin:<name>.")
    format: Literal["arrays", "text"] = Field(
        description="arrays: an .npz of inputs and labels (classifiers); text: JSON Lines documents (language models)."
    )
    num_rows: int = Field(description="Samples; for text, documents.")
    classes: list[int] = Field(description="The labels present; empty for text.")
    splits: dict[str, int]
    input_shape: list[int] = Field(description="One sample's shape; empty for text (a model's context length decides).")
    x_dtype: str = Field(description="The inputs' dtype; 'text' for text.")
    sha256: str
    size_bytes: int
    created_at: datetime
