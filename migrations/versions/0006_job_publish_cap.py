"""jobs count the times they were re-sent without being started

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

A task that fails before it claims its job (a bug, a broken worker image) leaves the job QUEUED, and
the reconciler used to re-send it forever. ``unclaimed_sends`` counts the re-sends made while its
model was idle and a worker was alive; at ``UNLEARND_JOB_MAX_UNCLAIMED_SENDS`` the job fails with
the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("unclaimed_sends", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("unclaimed_sends")
