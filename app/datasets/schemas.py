from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    source: str
    num_rows: int
    classes: list[int]
    splits: dict[str, int]
    input_shape: list[int]
    x_dtype: str
    sha256: str
    size_bytes: int
    created_at: datetime
