"""signed chain heads: statements, signed with the service's key, of the chain's last seq and hash

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10

A row of ``audit_events`` can be rewritten (and every later hash recomputed) or the tail deleted by
someone with the triggers off, and the chain alone still verifies: nothing outside it pinned its
head. ``audit_chain_heads`` keeps signed heads (app/audit/heads.py); like ``audit_events`` it is
append-only (a trigger refuses UPDATE, DELETE and TRUNCATE), and a copy an auditor keeps needs
neither: its signature is what counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "audit_chain_heads is append-only"

PG_FUNCTION = f"""
CREATE FUNCTION audit_chain_heads_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER audit_chain_heads_no_update_delete BEFORE UPDATE OR DELETE ON audit_chain_heads"
    " FOR EACH ROW EXECUTE FUNCTION audit_chain_heads_refuse_change()",
    "CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_heads_refuse_change()",
)
SQLITE_TRIGGERS = {
    op_name: f"CREATE TRIGGER audit_chain_heads_no_{op_name.lower()} BEFORE {op_name} ON audit_chain_heads"
    f" BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {op_name} refused'); END"
    for op_name in ("UPDATE", "DELETE")
}


def upgrade() -> None:
    op.create_table(
        "audit_chain_heads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_heads")),
    )
    op.create_index("ix_audit_chain_heads_seq", "audit_chain_heads", ["seq"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for ddl in PG_TRIGGERS:
            op.execute(ddl)
    else:
        for ddl in SQLITE_TRIGGERS.values():
            op.execute(ddl)


def downgrade() -> None:
    # dropping the table drops its triggers with it
    op.drop_table("audit_chain_heads")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_chain_heads_refuse_change()")
