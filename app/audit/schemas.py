from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    occurred_at: datetime
    tenant_id: str | None = Field(description="The tenant; null on events from before tenants existed.")
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


class ChainVerificationOut(BaseModel):
    """The result of re-walking the hash chain; the walk stops at the first break."""

    ok: bool = Field(description="True when every event in the range links to the one before it.")
    checked: int = Field(description="Events found intact, from `from_seq` to `to_seq`.")
    from_seq: int = Field(description="The first seq of the range walked.")
    to_seq: int | None = Field(description="The last seq found intact (null when none was).")
    first_broken_seq: int | None = Field(description="Where the chain breaks (null when ok).")
    reason: str | None = Field(description="Why it breaks there (null when ok).")
    last_hash: str | None = Field(description="The hash of event `to_seq`: the head this walk vouches for.")
