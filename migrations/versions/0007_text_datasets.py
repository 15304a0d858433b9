"""datasets have a format: arrays (.npz) or text (JSON Lines documents, for language models)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

Every dataset registered before this revision is an .npz of arrays: they get ``arrays``. A text
dataset's ``dataset_samples`` rows are its documents (``label`` 0, ``split`` from the file).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("format", sa.String(length=10), nullable=False, server_default="arrays"))
        batch.create_check_constraint(op.f("ck_datasets_format"), "format IN ('arrays', 'text')")


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_constraint(op.f("ck_datasets_format"), type_="check")
        batch.drop_column("format")
