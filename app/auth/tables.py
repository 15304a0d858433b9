from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime


class ApiKey(Base):
    """A key is stored only as the sha256 of its secret: the secret is shown once, at creation.

    A plain sha256 (not a slow password hash) is right here: the secret is 256 random bits, so there
    is nothing to brute-force, and the lookup must be one indexed equality per request.
    """

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # the secret's first characters, to recognise it
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))  # an actor: "api-key:<id>" or "cli"
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
