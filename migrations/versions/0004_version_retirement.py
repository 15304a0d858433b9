"""retired versions and their purge

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

When an erasure succeeds, the model's earlier versions still hold the erased samples: they are
retired (download answers 410) and their files purged once ``purge_after`` has passed. The columns
say when and by which job, so an auditor can follow a version from creation to purge. Also an
index on forget_requests.due_at for the overdue filter.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("retired_at", TS, nullable=True))
        batch.add_column(sa.Column("retired_by_job_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("purge_after", TS, nullable=True))
        batch.add_column(sa.Column("purged_at", TS, nullable=True))
    # the purge pass looks for retired, unpurged versions whose time has come
    op.create_index("ix_model_versions_purge_after", "model_versions", ["purge_after"])
    # the overdue filter of GET /v1/forget-requests
    op.create_index("ix_forget_requests_due_at", "forget_requests", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_forget_requests_due_at", table_name="forget_requests")
    op.drop_index("ix_model_versions_purge_after", table_name="model_versions")
    with op.batch_alter_table("model_versions") as batch:
        for column in ("purged_at", "purge_after", "retired_by_job_id", "retired_at"):
            batch.drop_column(column)
