from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    occurred_at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    model_id: uuid.UUID | None
    forget_request_id: uuid.UUID | None
    job_id: uuid.UUID | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str
