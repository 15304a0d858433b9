"""audit events are append-only

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Triggers that refuse UPDATE, DELETE and TRUNCATE on audit_events, so a bug or a careless script
cannot rewrite history through the application's role. The hash chain still catches what a
superuser does with the triggers disabled; these make the honest path the only path.
SQLite (embedded mode) has no TRUNCATE and no statement triggers; DELETE without WHERE fires the
row trigger there, so UPDATE and DELETE row triggers cover it.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "audit_events is append-only"

PG_FUNCTION = f"""
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
PG_ROW_TRIGGER = """
CREATE TRIGGER audit_events_no_update_delete
BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()
"""
PG_TRUNCATE_TRIGGER = """
CREATE TRIGGER audit_events_no_truncate
BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()
"""

SQLITE_TRIGGERS = {
    op_name: f"""
CREATE TRIGGER audit_events_no_{op_name.lower()}
BEFORE {op_name} ON audit_events
BEGIN
    SELECT RAISE(ABORT, '{MESSAGE}: {op_name} refused');
END
"""
    for op_name in ("UPDATE", "DELETE")
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_ROW_TRIGGER)
        op.execute(PG_TRUNCATE_TRIGGER)
    else:
        for ddl in SQLITE_TRIGGERS.values():
            op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_refuse_change()")
    else:
        for op_name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS audit_events_no_{op_name.lower()}")
