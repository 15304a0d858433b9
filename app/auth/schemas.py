from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.auth.scopes import Scope
from app.core.validation import SafeName

# Tenants are named by operators (CLI): short, lowercase, safe in URLs, logs and file names.
TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SafeName
    scopes: list[Scope] = Field(min_length=1, max_length=6, description="What the key may do; admin implies all.")


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: str
    name: str
    prefix: str = Field(description="The secret's first characters, to tell keys apart.")
    scopes: list[str]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself: shown only in this answer. Send it as `Authorization: Bearer`.")
