"""verified erasure: held-out roles on datasets, a verification policy on requests and jobs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

- ``datasets.holdout_roles``: how the held-out rows (test and val) split into the calibration part
  (methods may read it) and the evaluation part (only verification and reporting read it), by a
  stable hash of each sample ID (workers/engine/holdout.py). Filled for existing datasets here.
- ``forget_requests`` / ``jobs``: ``verification`` (a request's changes to the default policy, with
  the reason when it loosens one) and ``on_verification_failure`` (fail, escalate or accept).
- ``datasets``: ``rows_in_file`` (the rows the stored file holds now; ``num_rows`` stays as
  registered), ``file_rewrite_due_at`` (tombstoned rows wait to leave the stored file: set here for
  every dataset that has some, so the next pass removes them) and ``superseded_artifact_key`` (the
  file a committed rewrite replaced, until it is deleted). See app/datasets/file_erasure.py.
- ``update_log_steps.state``: live, subtracted (amnesiac unlearning subtracted the step) or purged
  (an erasure's purge removed it without subtracting it); steps that leave a log keep their row, and
  the other samples of their batch their index rows (app/update_logs/purge.py). Existing rows: live.
  Steps deleted before this revision (subtracted or purged: no longer known which) are absent, so
  an amnesiac request for a sample that shared one counts it as never recorded and refuses: the
  safe side, as a purged one cannot be told from a subtracted one any more.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from workers.engine.holdout import role_counts

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("holdout_roles", _JSON, nullable=True))
    for table in ("forget_requests", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("verification", _JSON, nullable=True))
            batch.add_column(sa.Column("on_verification_failure", sa.String(length=10), nullable=True))
    _fill_holdout_roles()
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("rows_in_file", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("file_rewrite_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("superseded_artifact_key", sa.String(length=300), nullable=True))
    _fill_file_rows()
    # update-log steps are marked (subtracted | purged), not deleted; the existing ones are live
    with op.batch_alter_table("update_log_steps") as batch:
        batch.add_column(sa.Column("state", sa.String(length=10), nullable=False, server_default="live"))
        batch.create_check_constraint(op.f("ck_update_log_steps_state"), "state IN ('live', 'subtracted', 'purged')")


def _fill_holdout_roles() -> None:
    conn = op.get_bind()
    datasets = sa.table("datasets", sa.column("id"), sa.column("holdout_roles", _JSON))
    samples = sa.table("dataset_samples", sa.column("dataset_id"), sa.column("sample_id"), sa.column("split"))
    for (dataset_id,) in conn.execute(sa.select(datasets.c.id)).all():
        ids = conn.execute(
            sa.select(samples.c.sample_id).where(samples.c.dataset_id == dataset_id, samples.c.split != "train")
        ).scalars()
        conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(holdout_roles=role_counts(list(ids))))


def _fill_file_rows() -> None:
    """Every stored file still holds all its rows; those with tombstones are due for a rewrite."""
    op.execute("UPDATE datasets SET rows_in_file = num_rows")
    op.execute(
        "UPDATE datasets SET file_rewrite_due_at = CURRENT_TIMESTAMP WHERE EXISTS (SELECT 1 FROM dataset_samples s "
        "WHERE s.dataset_id = datasets.id AND s.erased_at IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("update_log_steps") as batch:
        batch.drop_constraint(op.f("ck_update_log_steps_state"), type_="check")
        batch.drop_column("state")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("superseded_artifact_key")
        batch.drop_column("file_rewrite_due_at")
        batch.drop_column("rows_in_file")
    for table in ("jobs", "forget_requests"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("on_verification_failure")
            batch.drop_column("verification")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("holdout_roles")
