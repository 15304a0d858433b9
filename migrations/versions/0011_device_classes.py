"""device classes: where a model's jobs run, and the queue each job is sent to

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-17

- ``models.device_class``: auto, gpu or cpu (auto: by ``parameter_count`` against
  UNLEARND_CPU_MAX_PARAMETERS, app.jobs.service.device_class_for). Existing models: auto.
- ``models.parameter_count``: the elements of the checkpoint's tensors, from the architecture's
  layout at registration. Existing models: NULL (not computed here: a language model's vocabulary
  may come from tokenizer files on the API's disk), which routes them to gpu, as every job went.
- ``jobs.device_class``: the queue (``<queue>.gpu`` / ``<queue>.cpu``) the job is published to; the
  reconciler re-sends it there. Existing jobs: gpu. Their messages in the old single queue are never
  consumed again; the reconciler re-sends every job still QUEUED, to the gpu queue.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("device_class", sa.String(length=10), nullable=False, server_default="auto"))
        batch.add_column(sa.Column("parameter_count", sa.BigInteger(), nullable=True))
        batch.create_check_constraint(op.f("ck_models_device_class"), "device_class IN ('auto', 'gpu', 'cpu')")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("device_class", sa.String(length=10), nullable=False, server_default="gpu"))
        batch.create_check_constraint(op.f("ck_jobs_device_class"), "device_class IN ('gpu', 'cpu')")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_device_class"), type_="check")
        batch.drop_column("device_class")
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint(op.f("ck_models_device_class"), type_="check")
        batch.drop_column("parameter_count")
        batch.drop_column("device_class")
