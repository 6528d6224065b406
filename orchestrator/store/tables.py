"""The relational schema shared by the SQLite and PostgreSQL stores.

Any change here needs an Alembic revision in `migrations/versions/` and a new
`SCHEMA_REVISION` (a test compares the migrated schema with these tables).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from ..models import IDEMPOTENCY_KEY_MAX, RUN_ID_MAX


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on backends with and without time zones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store one naive UTC format throughout.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The Alembic revision these tables correspond to.
SCHEMA_REVISION = "0002"

metadata = sa.MetaData()

runs = sa.Table(
    "wf_runs",
    metadata,
    sa.Column("id", sa.String(RUN_ID_MAX), primary_key=True),
    sa.Column("workflow", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("waiting_for", sa.String(400)),
    sa.Column("input", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("version", sa.String(64)),
    sa.Column("parent_run_id", sa.String(RUN_ID_MAX)),
    sa.Column("parent_step", sa.String(300)),
    sa.Column("parent_workflow", sa.String(200)),
    sa.Column("cancel_requested", sa.Text),
    sa.Column("idempotency_key", sa.String(IDEMPOTENCY_KEY_MAX)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # The pass lease: which orchestrator pass holds the run, until when.
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", UTCDateTime),
    # Pass requests: `requested` is bumped by whoever has news for the run (a finished step,
    # a due timer); a pass releases the run only if no request came after its claim.
    sa.Column("requested", sa.Integer, nullable=False, server_default="1"),
    sa.Column("done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("requested_at", UTCDateTime),
    sa.Index("ix_wf_runs_workflow_created", "workflow", "created_at"),
    sa.Index("ix_wf_runs_status_created", "status", "created_at"),
    sa.Index("ix_wf_runs_requested_at", "requested_at"),
    sa.Index("ix_wf_runs_parent", "parent_run_id"),
    sa.Index("ix_wf_runs_idempotency_key", "idempotency_key"),
    sa.Index("ix_wf_runs_completed", "completed_at"),
)

steps = sa.Table(
    "wf_steps",
    metadata,
    sa.Column("run_id", sa.String(RUN_ID_MAX), sa.ForeignKey("wf_runs.id", ondelete="CASCADE")),
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
    sa.Column("errors", sa.Text),  # JSON list: each failed attempt's error
    sa.Column("policy", sa.Text),  # JSON StepPolicy: retry, timeout, on_error
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("wake_at", UTCDateTime),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("dispatched_at", UTCDateTime),
    sa.PrimaryKeyConstraint("run_id", "name"),
    sa.Index("ix_wf_steps_status_lease", "status", "lease_until"),
    sa.Index("ix_wf_steps_status_wake", "status", "wake_at"),
    sa.Index("ix_wf_steps_status_dispatched", "status", "dispatched_at"),
)

events = sa.Table(
    "wf_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(RUN_ID_MAX), sa.ForeignKey("wf_runs.id", ondelete="CASCADE")),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("consumed_by", sa.String(300)),  # the wait step that took it
    sa.Index("ix_wf_events_run", "run_id", "consumed_by"),
)
