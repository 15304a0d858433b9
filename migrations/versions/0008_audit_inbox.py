"""audit_inbox: events wait here, committed with the change they record, until the sequencer chains them

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

Before this revision every transaction that recorded an event appended it to the hash chain itself,
under the one chain lock, held until its commit: every write of the service queued behind every
other. Now a transaction writes its events to ``audit_inbox`` (no lock) and one sequencer at a time
moves them into ``audit_events`` with their seq and hashes (app/audit/sequencer.py). The inbox is not
append-only (the sequencer deletes what it chained); ``audit_events`` stays append-only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_T = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_inbox",
        # BigInteger on Postgres (an identity), INTEGER on SQLite (its rowid alias autoincrements)
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("entity_type", sa.String(length=50), nullable=False),
        sa.Column("entity_id", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=True),
        sa.Column("forget_request_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("payload", JSON_T, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_inbox")),
    )


def downgrade() -> None:
    # events still waiting would be lost with the table: chain them first (GET /v1/audit-events/verify)
    op.drop_table("audit_inbox")
