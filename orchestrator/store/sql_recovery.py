"""The sweeper's queries for the SQL stores (mixed into `SqlStore`): each candidate is taken
by a compare-and-set, so concurrent sweepers never re-drive the same thing twice."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..models import StepStatus
from ..states import TERMINAL
from .base import Backlog, PassNeeded, StepNeeded
from .rows import step_from_row
from .tables import runs, steps

_TERMINAL = [s.value for s in TERMINAL]
_SCHEDULED = StepStatus.SCHEDULED.value


class SqlRecovery:
    # Provided by SqlStore.
    def _write(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[sa.Connection]:
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
        # Not a run being cancelled either: its steps are never claimed again (claim_step),
        # and its cancel pass is already requested.
        return (
            sa.select(steps, runs.c.workflow.label("workflow"))
            .join(runs, runs.c.id == steps.c.run_id)
            .where(
                runs.c.status.notin_(_TERMINAL),
                runs.c.cancel_requested.is_(None),
                *self._of(workflows),
                *where,
            )
        )

    # What has (or should have) a message waiting in a queue, and since when: a pass request
    # nobody has taken up, a scheduled step whose message was sent (a retry's countdown message
    # counts from when it falls due).
    def _pending_pass(self, now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            runs.c.requested > runs.c.done,
            runs.c.status.notin_(_TERMINAL),
            self._lease_free(now),
        )

    @staticmethod
    def _pending_step(now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            steps.c.status == _SCHEDULED,
            sa.or_(steps.c.wake_at.is_(None), steps.c.wake_at <= now),
            steps.c.dispatched_at.is_not(None),
        )

    _step_waits_since = sa.case(
        (
            sa.and_(steps.c.wake_at.is_not(None), steps.c.wake_at > steps.c.dispatched_at),
            steps.c.wake_at,
        ),
        else_=steps.c.dispatched_at,
    )

    def backlog(
        self, now: datetime, older_than: datetime, workflows: Collection[str] | None = None
    ) -> list[Backlog]:
        overdue_pass = sa.func.count().filter(runs.c.requested_at < older_than)
        overdue_step = sa.func.count().filter(self._step_waits_since < older_than)
        passes = (
            sa.select(runs.c.workflow, sa.func.count(), overdue_pass)
            .where(*self._pending_pass(now), *self._of(workflows))
            .group_by(runs.c.workflow)
        )
        step_counts = (
            self._active_steps(workflows, *self._pending_step(now))
            .with_only_columns(runs.c.workflow, steps.c.task, sa.func.count(), overdue_step)
            .group_by(runs.c.workflow, steps.c.task)
        )
        with self._read() as conn:
            found = [Backlog(w, None, n, old) for w, n, old in conn.execute(passes)]
            found += [Backlog(w, t, n, old) for w, t, n, old in conn.execute(step_counts) if t]
        return found

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
                        status=_SCHEDULED,
                        lease_owner=None,
                        lease_until=None,
                        dispatched_at=now,
                    )
                ).rowcount:
                    step = step_from_row({**row, "status": _SCHEDULED})
                    out.append(StepNeeded(row["workflow"], step))
        return out

    def stale_scheduled_steps(
        self,
        now: datetime,
        older_than: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
        tasks: Sequence[str] | None = None,
    ) -> list[StepNeeded]:
        stale = (*self._pending_step(now), self._step_waits_since < older_than)
        if tasks is not None:
            stale = (*stale, steps.c.task.in_(sorted(tasks)))
        query = self._active_steps(workflows, *stale).order_by(self._step_waits_since)
        return self._redrive_steps(query.limit(limit), stale, now)

    def due_retries(
        self, now: datetime, due_before: datetime, limit: int = 100,
        workflows: Collection[str] | None = None,
    ) -> list[StepNeeded]:  # fmt: skip
        unsent = (
            steps.c.status == _SCHEDULED,
            steps.c.dispatched_at.is_(None),
            steps.c.wake_at <= due_before,
        )
        return self._redrive_steps(self._active_steps(workflows, *unsent).limit(limit), unsent, now)

    def _redrive_steps(
        self, query: sa.Select[Any], where: Sequence[sa.ColumnElement[bool]], now: datetime
    ) -> list[StepNeeded]:
        out: list[StepNeeded] = []
        with self._write() as conn:
            for row in conn.execute(query).mappings().all():
                sent, key = row["dispatched_at"], (row["run_id"], row["name"])
                # Unchanged since read: another sweeper did not take it meanwhile.
                same = (
                    steps.c.dispatched_at.is_(None)
                    if sent is None
                    else steps.c.dispatched_at == sent
                )
                this = sa.and_(steps.c.run_id == key[0], steps.c.name == key[1])
                if conn.execute(
                    steps.update().where(this, same, *where).values(dispatched_at=now)
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
        pending = (*self._pending_pass(now), runs.c.requested_at < older_than, *self._of(workflows))
        out: list[PassNeeded] = []
        with self._write() as conn:
            rows = conn.execute(
                sa.select(runs.c.id, runs.c.workflow, runs.c.requested_at)
                .where(*pending)
                .order_by(runs.c.requested_at)
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
