from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Identity, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime

# What an event says, chained or still waiting: the sequencer copies these from one table to the other.
EVENT_FIELDS = (
    "tenant_id",
    "actor",
    "action",
    "entity_type",
    "entity_id",
    "model_id",
    "forget_request_id",
    "job_id",
    "payload",
)


class _EventContent:
    """The columns an audit event and an inbox event share."""

    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # NULL only on events written before tenants existed (migration 0005): the default tenant's
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[uuid.UUID | None] = mapped_column()
    forget_request_id: Mapped[uuid.UUID | None] = mapped_column()
    job_id: Mapped[uuid.UUID | None] = mapped_column()
    payload: Mapped[dict] = mapped_column(JSONType)


class AuditEvent(_EventContent, Base):
    """Append-only and hash-chained: hash = sha256(prev_hash || canonical JSON of the event)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_model_id_seq", "model_id", "seq"),
        Index("ix_audit_events_forget_request_id_seq", "forget_request_id", "seq"),
        Index("ix_audit_events_job_id_seq", "job_id", "seq"),
        Index("ix_audit_events_action_seq", "action", "seq"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_tenant_id_seq", "tenant_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditInboxEvent(_EventContent, Base):
    """An event committed with the change it records, not yet chained: the sequencer moves it into
    ``audit_events`` (in ``id`` order) within moments; see app/audit/sequencer.py."""

    __tablename__ = "audit_inbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True)


class AuditChainHead(Base):
    """A signed statement that the chain's event ``seq`` had hash ``hash`` at ``signed_at``: kept
    outside the rows it vouches for, so a rewritten or truncated tail no longer matches it.
    Append-only (migration 0010); see app/audit/heads.py."""

    __tablename__ = "audit_chain_heads"
    __table_args__ = (Index("ix_audit_chain_heads_seq", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kid: Mapped[str] = mapped_column(String(64))
    # the exact canonical JSON that was signed: served verbatim, never rebuilt from the columns
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(200))
