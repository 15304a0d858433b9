"""API keys and tenants

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Every dataset, model, forget request and job now belongs to a tenant, and a caller sees only its
own tenant's (an API key carries one tenant). Rows that exist before this migration belong to the
tenant "default". Names that were unique across the service become unique per tenant: otherwise one
tenant could learn, from a 409, which model names or request ids another one uses, and an
Idempotency-Key sent by one tenant could replay another tenant's answer.

audit_events gains a nullable tenant_id: events written before this migration keep NULL (their hash
did not cover a tenant, so a value added now could not be verified); they count as the default
tenant's. The column is added without a table rebuild, so the append-only triggers stay in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON_T = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
TENANT = sa.String(length=64)
OWNED = ("datasets", "models", "forget_requests", "jobs")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("scopes", JSON_T, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_keys_secret_sha256")),
    )
    op.create_index(op.f("ix_api_keys_tenant_id"), "api_keys", ["tenant_id"])

    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            # the server default fills existing rows, then goes: new rows must name their tenant
            batch.add_column(sa.Column("tenant_id", TENANT, nullable=False, server_default="default"))
        with op.batch_alter_table(table) as batch:
            batch.alter_column("tenant_id", server_default=None)
            batch.create_index(f"ix_{table}_tenant_id", ["tenant_id"])

    with op.batch_alter_table("models") as batch:
        batch.drop_constraint("uq_models_name", type_="unique")
        batch.create_unique_constraint("uq_models_tenant_id_name", ["tenant_id", "name"])
    with op.batch_alter_table("forget_requests") as batch:
        batch.drop_constraint("uq_forget_requests_request_id", type_="unique")
        batch.create_unique_constraint("uq_forget_requests_tenant_id_request_id", ["tenant_id", "request_id"])
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("tenant_id", TENANT, nullable=False, server_default="default"))
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("tenant_id", server_default=None)
        batch.drop_constraint("pk_idempotency_keys", type_="primary")
        batch.create_primary_key("pk_idempotency_keys", ["tenant_id", "key"])

    # no batch mode here: on SQLite it would rebuild the table and drop the append-only triggers
    op.add_column("audit_events", sa.Column("tenant_id", TENANT, nullable=True))
    op.create_index("ix_audit_events_tenant_id_seq", "audit_events", ["tenant_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_tenant_id_seq", table_name="audit_events")
    # a plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too): a batch rebuild would drop the triggers
    op.drop_column("audit_events", "tenant_id")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_constraint("pk_idempotency_keys", type_="primary")
        batch.create_primary_key("pk_idempotency_keys", ["key"])
        batch.drop_column("tenant_id")
    with op.batch_alter_table("forget_requests") as batch:
        batch.drop_constraint("uq_forget_requests_tenant_id_request_id", type_="unique")
        batch.create_unique_constraint("uq_forget_requests_request_id", ["request_id"])
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint("uq_models_tenant_id_name", type_="unique")
        batch.create_unique_constraint("uq_models_name", ["name"])
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_tenant_id")
            batch.drop_column("tenant_id")
    op.drop_index(op.f("ix_api_keys_tenant_id"), table_name="api_keys")
    op.drop_table("api_keys")
