"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Every table of the service's first slice. Types are spelled out here rather than imported from
the app, so this migration stays what it was when later code changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON_T = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("entity_type", sa.String(length=50), nullable=False),
        sa.Column("entity_id", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=True),
        sa.Column("forget_request_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("payload", JSON_T, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_action_seq", ["action", "seq"], unique=False)
        batch_op.create_index("ix_audit_events_forget_request_id_seq", ["forget_request_id", "seq"], unique=False)
        batch_op.create_index("ix_audit_events_job_id_seq", ["job_id", "seq"], unique=False)
        batch_op.create_index("ix_audit_events_model_id_seq", ["model_id", "seq"], unique=False)
        batch_op.create_index("ix_audit_events_occurred_at", ["occurred_at"], unique=False)

    op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("artifact_key", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("num_rows", sa.Integer(), nullable=False),
        sa.Column("classes", JSON_T, nullable=False),
        sa.Column("splits", JSON_T, nullable=False),
        sa.Column("input_shape", JSON_T, nullable=False),
        sa.Column("x_dtype", sa.String(length=20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_table(
        "dataset_samples",
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.String(length=200), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=10), nullable=False),
        sa.Column("erased_at", TS, nullable=True),
        sa.Column("erased_by_request", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_samples_dataset_id_datasets")),
        sa.PrimaryKeyConstraint("dataset_id", "row_index", name=op.f("pk_dataset_samples")),
    )
    with op.batch_alter_table("dataset_samples", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_samples_dataset_id_sample_id", ["dataset_id", "sample_id"], unique=True)

    op.create_table(
        "models",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("architecture", sa.String(length=100), nullable=False),
        sa.Column("arch_config", JSON_T, nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("recipe", JSON_T, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("head_version", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("state IN ('TRAINING', 'READY', 'FAILED')", name=op.f("ck_models_state")),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_models_dataset_id_datasets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", name=op.f("uq_models_name")),
    )
    op.create_table(
        "forget_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("regulation", sa.String(length=20), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=True),
        sa.Column("scope_type", sa.String(length=20), nullable=False),
        sa.Column("scope_values", JSON_T, nullable=False),
        sa.Column("scope_count", sa.Integer(), nullable=False),
        sa.Column("scope_sha256", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=50), nullable=False),
        sa.Column("params", JSON_T, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("scope_type IN ('sample_ids', 'class_labels')", name=op.f("ck_forget_requests_scope_type")),
        sa.CheckConstraint(
            "state IN ('QUEUED', 'RUNNING', 'VERIFYING', 'SUCCEEDED', 'FAILED', 'CANCELLING', 'CANCELLED')",
            name=op.f("ck_forget_requests_state"),
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_forget_requests_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forget_requests")),
        sa.UniqueConstraint("request_id", name=op.f("uq_forget_requests_request_id")),
    )
    with op.batch_alter_table("forget_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_forget_requests_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_forget_requests_received_at"), ["received_at"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=50), nullable=False),
        sa.Column("params", JSON_T, nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=True),
        sa.Column("result_version", sa.Integer(), nullable=True),
        sa.Column("progress_fraction", sa.Float(), nullable=False),
        sa.Column("progress_phase", sa.String(length=50), nullable=True),
        sa.Column("progress_step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        sa.Column("metrics", JSON_T, nullable=True),
        sa.Column("error", JSON_T, nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('train', 'unlearn')", name=op.f("ck_jobs_kind")),
        sa.CheckConstraint("state != 'FAILED' OR error IS NOT NULL", name=op.f("ck_jobs_failed_has_error")),
        sa.CheckConstraint(
            "state != 'SUCCEEDED' OR result_version IS NOT NULL", name=op.f("ck_jobs_succeeded_has_result")
        ),
        sa.CheckConstraint(
            "state IN ('QUEUED', 'RUNNING', 'VERIFYING', 'SUCCEEDED', 'FAILED', 'CANCELLING', 'CANCELLED')",
            name=op.f("ck_jobs_state"),
        ),
        sa.CheckConstraint(
            "state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED') OR finished_at IS NOT NULL",
            name=op.f("ck_jobs_finished_at"),
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_jobs_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_model_id"), ["model_id"], unique=False)
        batch_op.create_index("ix_jobs_state_enqueued_at", ["state", "enqueued_at"], unique=False)
        batch_op.create_index(
            "uq_jobs_one_active_per_model",
            ["model_id"],
            unique=True,
            postgresql_where=sa.text("state IN ('RUNNING', 'VERIFYING', 'CANCELLING')"),
            sqlite_where=sa.text("state IN ('RUNNING', 'VERIFYING', 'CANCELLING')"),
        )

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("artifact_key", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_by_job_id", sa.Uuid(), nullable=True),
        sa.Column("metrics", JSON_T, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("state IN ('ACTIVE', 'RETIRED')", name=op.f("ck_model_versions_state")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_model_versions_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_model_versions_model_id_version")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", JSON_T, nullable=False),
        sa.Column("location", sa.String(length=300), nullable=True),
        sa.Column("forget_request_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["forget_request_id"],
            ["forget_requests.id"],
            name=op.f("fk_idempotency_keys_forget_request_id_forget_requests"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "job_batches",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=50), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=False),
        sa.Column("grad_norm", sa.Float(), nullable=True),
        sa.Column("lr", sa.Float(), nullable=True),
        sa.Column("samples_seen", sa.Integer(), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_batches_job_id_jobs")),
        sa.PrimaryKeyConstraint("job_id", "attempt", "step", name=op.f("pk_job_batches")),
    )
    op.create_table(
        "job_requests",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("forget_request_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["forget_request_id"],
            ["forget_requests.id"],
            name=op.f("fk_job_requests_forget_request_id_forget_requests"),
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_requests_job_id_jobs")),
        sa.PrimaryKeyConstraint("job_id", "forget_request_id", name=op.f("pk_job_requests")),
    )
    with op.batch_alter_table("job_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_requests_forget_request_id"), ["forget_request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_requests_forget_request_id"))

    op.drop_table("job_requests")
    op.drop_table("job_batches")
    op.drop_table("idempotency_keys")
    op.drop_table("model_versions")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_jobs_one_active_per_model",
            postgresql_where=sa.text("state IN ('RUNNING', 'VERIFYING', 'CANCELLING')"),
            sqlite_where=sa.text("state IN ('RUNNING', 'VERIFYING', 'CANCELLING')"),
        )
        batch_op.drop_index("ix_jobs_state_enqueued_at")
        batch_op.drop_index(batch_op.f("ix_jobs_model_id"))

    op.drop_table("jobs")
    with op.batch_alter_table("forget_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_forget_requests_received_at"))
        batch_op.drop_index(batch_op.f("ix_forget_requests_model_id"))

    op.drop_table("forget_requests")
    op.drop_table("models")
    with op.batch_alter_table("dataset_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_samples_dataset_id_sample_id")

    op.drop_table("dataset_samples")
    op.drop_table("datasets")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_occurred_at")
        batch_op.drop_index("ix_audit_events_model_id_seq")
        batch_op.drop_index("ix_audit_events_job_id_seq")
        batch_op.drop_index("ix_audit_events_forget_request_id_seq")
        batch_op.drop_index("ix_audit_events_action_seq")

    op.drop_table("audit_events")
