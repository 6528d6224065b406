"""PostgreSQL's form of the hottest write: one statement where the generic store sends a
transaction of several.

Data-modifying CTEs let a step's outcome, the request it makes and the claim of the pass
that answers it be one statement, run without BEGIN and COMMIT (autocommit), so one round
trip and one WAL flush where the generic path (store/sql.py) takes four round trips. The
effects are the generic path's exactly: finish (first write wins), then a request on the
run and, if its lease is free, the claim. (SQLite cannot put an UPDATE in a WITH clause, and
needs no saving on round trips.)
"""

from __future__ import annotations

import sqlalchemy as sa

from ..models import RunStatus, StepStatus
from ..states import TERMINAL, claimable
from .sql_statements import lease_free, p, p_time
from .tables import runs, steps

_finished = (
    steps.update()
    .where(
        steps.c.run_id == p("run_id"),
        steps.c.name == p("name"),
        steps.c.status.in_([StepStatus.SCHEDULED.value, StepStatus.RUNNING.value]),
    )
    .values(
        status=StepStatus.SUCCEEDED.value,
        result=p("result"),
        error=None,
        completed_at=p_time("now"),
        lease_owner=None,
        lease_until=None,
    )
    .returning(steps.c.run_id)
    .cte("finished")
)
_takeable = sa.and_(
    runs.c.status.in_([s.value for s in claimable()]),
    sa.or_(lease_free(p_time("now")), runs.c.lease_owner == p("owner")),
)


def _if_taken(value: sa.ColumnElement[object] | object, current: sa.Column[object]) -> object:
    return sa.case((_takeable, value), else_=current)


_requested = (
    runs.update()
    .where(
        runs.c.id == p("run_id"),
        runs.c.status.notin_([s.value for s in TERMINAL]),
        sa.exists(sa.select(_finished.c.run_id)),
    )
    .values(
        requested=runs.c.requested + 1,
        requested_at=p_time("now"),
        lease_owner=_if_taken(p("owner"), runs.c.lease_owner),
        lease_until=_if_taken(p_time("lease_until"), runs.c.lease_until),
        status=_if_taken(RunStatus.RUNNING.value, runs.c.status),
        waiting_for=_if_taken(None, runs.c.waiting_for),
        started_at=_if_taken(sa.func.coalesce(runs.c.started_at, p_time("now")), runs.c.started_at),
        updated_at=p_time("now"),
    )
    .returning(*runs.c)
    .cte("requested")
)
_recorded = sa.select(sa.func.count()).select_from(_finished).scalar_subquery()

# One row: `recorded` (0 or 1) and the run as the request left it (NULL columns if the step
# was finished already); its lease_owner tells whether the claim was ours.
SUCCEED_AND_CLAIM = sa.select(_recorded.label("recorded"), *_requested.c).select_from(
    sa.select(sa.literal(1).label("one")).subquery().outerjoin(_requested, sa.true())
)
