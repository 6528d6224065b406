"""The schema as it was before migrations (stores created by `create_all`).

A database that has these tables but no `alembic_version` is taken to be at this revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies: a migration must keep meaning what it meant when it was written.
_when = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wf_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("waiting_for", sa.String(400)),
        sa.Column("input", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("version", sa.String(64)),
        sa.Column("parent_run_id", sa.String(64)),
        sa.Column("parent_step", sa.String(300)),
        sa.Column("parent_workflow", sa.String(200)),
        sa.Column("cancel_requested", sa.Text),
        sa.Column("created_at", _when, nullable=False),
        sa.Column("started_at", _when),
        sa.Column("completed_at", _when),
        sa.Column("updated_at", _when, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", _when),
        sa.Column("requested", sa.Integer, nullable=False, server_default="1"),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("requested_at", _when),
    )
    op.create_index("ix_wf_runs_workflow_created", "wf_runs", ["workflow", "created_at"])
    op.create_index("ix_wf_runs_status_created", "wf_runs", ["status", "created_at"])
    op.create_index("ix_wf_runs_requested_at", "wf_runs", ["requested_at"])
    op.create_index("ix_wf_runs_parent", "wf_runs", ["parent_run_id"])
    op.create_table(
        "wf_steps",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("wf_runs.id", ondelete="CASCADE")),
        sa.Column("name", sa.String(300)),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target", sa.String(300)),
        sa.Column("task", sa.String(400)),
        sa.Column("input", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("errors", sa.Text),
        sa.Column("policy", sa.Text),
        sa.Column("created_at", _when, nullable=False),
        sa.Column("started_at", _when),
        sa.Column("completed_at", _when),
        sa.Column("wake_at", _when),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", _when),
        sa.Column("dispatched_at", _when),
        sa.PrimaryKeyConstraint("run_id", "name"),
    )
    op.create_index("ix_wf_steps_status_lease", "wf_steps", ["status", "lease_until"])
    op.create_index("ix_wf_steps_status_wake", "wf_steps", ["status", "wake_at"])
    op.create_index("ix_wf_steps_status_dispatched", "wf_steps", ["status", "dispatched_at"])
    op.create_table(
        "wf_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("wf_runs.id", ondelete="CASCADE")),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("created_at", _when, nullable=False),
        sa.Column("consumed_by", sa.String(300)),
    )
    op.create_index("ix_wf_events_run", "wf_events", ["run_id", "consumed_by"])


def downgrade() -> None:
    op.drop_table("wf_events")
    op.drop_table("wf_steps")
    op.drop_table("wf_runs")
