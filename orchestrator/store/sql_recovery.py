"""The sweeper's queries for the SQL stores (mixed into `SqlStore`): each candidate is taken
by a compare-and-set, so concurrent sweepers never re-drive the same thing twice."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..models import StepStatus
from ..states import TERMINAL
from .base import PassNeeded, StepNeeded
from .rows import step_from_row
from .tables import runs, steps

_TERMINAL = [s.value for s in TERMINAL]


class SqlRecovery:
    # Provided by SqlStore.
    def _write(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError

    @staticmethod
    def _lease_free(now: datetime) -> sa.ColumnElement[bool]:
        raise NotImplementedError

    @staticmethod
    def _of(workflows: Collection[str] | None) -> tuple[sa.ColumnElement[bool], ...]:
        # Several services may share one store: each sweeper re-drives its own workflows only.
        return () if workflows is None else (runs.c.workflow.in_(sorted(workflows)),)

    def _active_steps(
        self, workflows: Collection[str] | None, *where: sa.ColumnElement[bool]
    ) -> sa.Select[Any]:
        return (
            sa.select(steps, runs.c.workflow.label("workflow"))
            .join(runs, runs.c.id == steps.c.run_id)
            .where(runs.c.status.notin_(_TERMINAL), *self._of(workflows), *where)
        )

    def reclaim_lapsed_steps(
        self, now: datetime, limit: int = 100, workflows: Collection[str] | None = None
    ) -> list[StepNeeded]:
        lapsed = (steps.c.status == StepStatus.RUNNING.value, steps.c.lease_until < now)
        out: list[StepNeeded] = []
        with self._write() as conn:
            query = self._active_steps(workflows, *lapsed).limit(limit)
            for row in conn.execute(query).mappings().all():
                if conn.execute(
                    steps.update()
                    .where(steps.c.run_id == row["run_id"], steps.c.name == row["name"], *lapsed)
                    .values(
                        status=StepStatus.SCHEDULED.value,
                        lease_owner=None,
                        lease_until=None,
                        dispatched_at=now,
                    )
                ).rowcount:
                    step = step_from_row({**row, "status": StepStatus.SCHEDULED.value})
                    out.append(StepNeeded(row["workflow"], step))
        return out

    def stale_scheduled_steps(
        self,
        now: datetime,
        older_than: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
    ) -> list[StepNeeded]:
        out: list[StepNeeded] = []
        due = sa.or_(steps.c.wake_at.is_(None), steps.c.wake_at <= now)
        unsent = sa.or_(
            steps.c.dispatched_at < older_than,
            sa.and_(steps.c.wake_at.is_not(None), steps.c.dispatched_at < steps.c.wake_at),
        )
        stale = (steps.c.status == StepStatus.SCHEDULED.value, due, unsent)
        with self._write() as conn:
            query = self._active_steps(workflows, *stale).limit(limit)
            for row in conn.execute(query).mappings().all():
                if conn.execute(
                    steps.update()
                    .where(
                        steps.c.run_id == row["run_id"],
                        steps.c.name == row["name"],
                        steps.c.dispatched_at == row["dispatched_at"],
                        *stale,
                    )
                    .values(dispatched_at=now)
                ).rowcount:
                    out.append(StepNeeded(row["workflow"], step_from_row(row)))
        return out

    def wake_due_timers(
        self,
        now: datetime,
        due_before: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
    ) -> list[PassNeeded]:
        quiet = runs.c.requested == runs.c.done
        due = (
            sa.select(steps.c.run_id, runs.c.workflow)
            .join(runs, runs.c.id == steps.c.run_id)
            .where(
                steps.c.status.in_([StepStatus.SLEEPING.value, StepStatus.WAITING.value]),
                steps.c.wake_at <= due_before,
                runs.c.status.notin_(_TERMINAL),
                quiet,
                *self._of(workflows),
            )
            .distinct()
            .limit(limit)
        )
        woken: list[PassNeeded] = []
        with self._write() as conn:
            for run_id, workflow in conn.execute(due).all():
                if conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, quiet)
                    .values(requested=runs.c.requested + 1, requested_at=now)
                ).rowcount:
                    woken.append(PassNeeded(run_id, workflow))
        return woken

    def runs_needing_pass(
        self,
        now: datetime,
        older_than: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
    ) -> list[PassNeeded]:
        pending = (
            runs.c.requested > runs.c.done,
            runs.c.requested_at < older_than,
            runs.c.status.notin_(_TERMINAL),
            self._lease_free(now),
            *self._of(workflows),
        )
        out: list[PassNeeded] = []
        with self._write() as conn:
            rows = conn.execute(
                sa.select(runs.c.id, runs.c.workflow, runs.c.requested_at)
                .where(*pending)
                .limit(limit)
            ).all()
            for row in rows:
                if conn.execute(
                    runs.update()
                    .where(runs.c.id == row.id, runs.c.requested_at == row.requested_at, *pending)
                    .values(requested_at=now)
                ).rowcount:
                    out.append(PassNeeded(row.id, row.workflow))
        return out
