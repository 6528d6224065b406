"""Events, cancel, resume and fork for the SQL stores (mixed into `SqlStore`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..errors import RunFinishedError, RunNotFoundError, StepNotFoundError
from ..models import Event, Run, RunStatus, StepStatus
from ..serialization import dumps
from ..states import TERMINAL, resume_refused, sources_of
from .base import PassNeeded
from .rows import event_from_row, run_from_row, run_values, step_values
from .tables import events, runs, steps

_TERMINAL = [s.value for s in TERMINAL]


class SqlControl:
    # Provided by SqlStore.
    def _write(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError

    def _request_pass(self, conn: sa.Connection, run_id: str, now: datetime) -> bool:
        raise NotImplementedError

    def _step_rows(self, conn: sa.Connection, run_id: str) -> Sequence[Mapping[Any, Any]]:
        raise NotImplementedError

    @staticmethod
    def _status_of(conn: sa.Connection, run_id: str) -> RunStatus | None:
        """Why a compare-and-set on a run matched nothing: its status, or None if missing."""
        status = conn.execute(
            sa.select(runs.c.status).where(runs.c.id == run_id)
        ).scalar_one_or_none()
        return None if status is None else RunStatus(status)

    @staticmethod
    def _active_run(conn: sa.Connection, run_id: str) -> Mapping[Any, Any]:
        row = conn.execute(runs.select().where(runs.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFoundError(run_id)
        if RunStatus(row["status"]) in TERMINAL:
            raise RunFinishedError(f"run {run_id} has already {row['status']}")
        return row

    def add_event(self, run_id: str, name: str, payload: object, now: datetime) -> str:
        with self._write() as conn:
            row = self._active_run(conn, run_id)
            conn.execute(
                events.insert().values(
                    run_id=run_id, name=name, payload=dumps(payload), created_at=now
                )
            )
            self._request_pass(conn, run_id, now)
            return str(row["workflow"])

    def pending_events(self, run_id: str) -> list[Event]:
        query = (
            events.select()
            .where(events.c.run_id == run_id, events.c.consumed_by.is_(None))
            .order_by(events.c.id)
        )
        with self._read() as conn:
            return [event_from_row(r) for r in conn.execute(query).mappings()]

    def request_cancel(self, run_id: str, reason: str, now: datetime) -> list[PassNeeded]:
        with self._write() as conn:
            self._active_run(conn, run_id)
            flagged: list[PassNeeded] = []
            for rid in self._with_descendants(conn, run_id):
                row = (
                    conn.execute(
                        runs.update()
                        .where(runs.c.id == rid, runs.c.status.notin_(_TERMINAL))
                        .values(
                            cancel_requested=reason,
                            requested=runs.c.requested + 1,
                            requested_at=now,
                        )
                        .returning(runs.c.workflow)
                    )
                    .scalars()
                    .first()
                )
                if row is not None:
                    flagged.append(PassNeeded(rid, row))
            return flagged

    @staticmethod
    def _with_descendants(conn: sa.Connection, run_id: str) -> Iterator[str]:
        frontier = [run_id]
        while frontier:
            yield from frontier
            frontier = list(
                conn.execute(
                    sa.select(runs.c.id).where(
                        runs.c.parent_run_id.in_(frontier), runs.c.status.notin_(_TERMINAL)
                    )
                ).scalars()
            )

    def resume_run(self, run_id: str, now: datetime) -> Run:
        allowed = [s.value for s in sources_of(RunStatus.PENDING)]
        with self._write() as conn:
            row = (
                conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.status.in_(allowed))
                    .values(
                        status=RunStatus.PENDING.value,
                        waiting_for=None,
                        output=None,
                        error=None,
                        completed_at=None,
                        cancel_requested=None,
                        updated_at=now,
                        requested=runs.c.requested + 1,
                        requested_at=now,
                    )
                    .returning(*runs.c)
                )
                .mappings()
                .first()
            )
            if row is None:
                status = self._status_of(conn, run_id)
                if status is None:
                    raise RunNotFoundError(run_id)
                raise resume_refused(run_id, status)
            # Succeeded steps stay cached; everything else is taken again.
            conn.execute(
                steps.delete().where(
                    steps.c.run_id == run_id, steps.c.status != StepStatus.SUCCEEDED.value
                )
            )
            return run_from_row(row, self._step_rows(conn, run_id))

    def fork_run(self, run_id: str, new_id: str, from_step: str, now: datetime) -> Run:
        with self._write() as conn:
            source = conn.execute(runs.select().where(runs.c.id == run_id)).mappings().first()
            if source is None:
                raise RunNotFoundError(run_id)
            original = run_from_row(source, self._step_rows(conn, run_id))
            try:
                cut = original.step(from_step).seq
            except KeyError:
                known = [s.name for s in original.steps]
                raise StepNotFoundError(run_id, from_step, known) from None
            fork = Run(
                id=new_id,
                workflow=original.workflow,
                status=RunStatus.PENDING,
                input=original.input,
                version=original.version,
                created_at=now,
                updated_at=now,
            )
            conn.execute(runs.insert().values(run_values(fork)))
            kept = [
                s.model_copy(update={"run_id": new_id})
                for s in original.steps
                if s.seq < cut and s.status.finished
            ]
            if kept:
                conn.execute(
                    steps.insert(), [step_values(s) | {"dispatched_at": now} for s in kept]
                )
            return fork.model_copy(update={"steps": kept})
