"""update logs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The update recorder's logs (amnesiac unlearning), their inverted index sample -> steps, the
model's log spec and current log, and nullable batch losses (a subtracted step has none).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON_T = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "update_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("config", JSON_T, nullable=False),
        sa.Column("param_shapes", JSON_T, nullable=False),
        sa.Column("steps_recorded", sa.Integer(), nullable=False),
        sa.Column("dense_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("gradient_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_update_logs_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_update_logs")),
    )
    with op.batch_alter_table("update_logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_update_logs_model_id"), ["model_id"], unique=False)

    op.create_table(
        "update_log_chunks",
        sa.Column("log_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("artifact_key", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["update_logs.id"], name=op.f("fk_update_log_chunks_log_id_update_logs")),
        sa.PrimaryKeyConstraint("log_id", "kind", "chunk_index", name=op.f("pk_update_log_chunks")),
    )
    op.create_table(
        "update_log_samples",
        sa.Column("log_id", sa.Uuid(), nullable=False),
        sa.Column("sample_id", sa.String(length=200), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["update_logs.id"], name=op.f("fk_update_log_samples_log_id_update_logs")),
        sa.PrimaryKeyConstraint("log_id", "sample_id", "step", name=op.f("pk_update_log_samples")),
    )
    with op.batch_alter_table("update_log_samples", schema=None) as batch_op:
        batch_op.create_index("ix_update_log_samples_log_id_step", ["log_id", "step"], unique=False)

    op.create_table(
        "update_log_steps",
        sa.Column("log_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("grad_chunk_index", sa.Integer(), nullable=True),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["update_logs.id"], name=op.f("fk_update_log_steps_log_id_update_logs")),
        sa.PrimaryKeyConstraint("log_id", "step", name=op.f("pk_update_log_steps")),
    )
    with op.batch_alter_table("job_batches", schema=None) as batch_op:
        batch_op.alter_column("loss", existing_type=sa.Float(), nullable=True)

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("update_log_spec", JSON_T, nullable=True))
        batch_op.add_column(sa.Column("update_log_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("update_log_id")
        batch_op.drop_column("update_log_spec")

    with op.batch_alter_table("job_batches", schema=None) as batch_op:
        batch_op.alter_column("loss", existing_type=sa.Float(), nullable=False)

    op.drop_table("update_log_steps")
    with op.batch_alter_table("update_log_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_update_log_samples_log_id_step")

    op.drop_table("update_log_samples")
    op.drop_table("update_log_chunks")
    with op.batch_alter_table("update_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_update_logs_model_id"))

    op.drop_table("update_logs")
