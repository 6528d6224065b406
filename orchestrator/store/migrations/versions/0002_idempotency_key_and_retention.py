"""Runs keep the idempotency key they were started with; finished runs are found by when
they finished (retention: `workflow runs purge`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wf_runs") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200)))
    op.create_index("ix_wf_runs_idempotency_key", "wf_runs", ["idempotency_key"])
    op.create_index("ix_wf_runs_completed", "wf_runs", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_wf_runs_completed", "wf_runs")
    op.drop_index("ix_wf_runs_idempotency_key", "wf_runs")
    with op.batch_alter_table("wf_runs") as batch:
        batch.drop_column("idempotency_key")
