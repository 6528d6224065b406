"""The SQLAlchemy Core store shared by SQLite and PostgreSQL.

No transaction is held across user code: every method is one short transaction, and the
run "lock" is a lease column taken by compare-and-set, so a pass that runs a long inline
step pins no connection (a lesson from Postgres-backed peers whose run locks left sessions
"idle in transaction" for hours).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..backoff import retrying
from ..errors import InvalidTransitionError, LeaseLostError, RunExistsError, StoreUnavailableError
from ..models import ErrorInfo, Run, RunPatch, RunStatus, StepRun, StepStatus
from ..serialization import dumps, loads
from ..states import TERMINAL, claimable
from . import schema
from . import sql_statements as q
from .base import ClaimRefused, PassClaim, PassNeeded, RunStore, StepNeeded
from .rows import run_from_row, run_values, step_from_row, step_values
from .sql_control import SqlControl
from .sql_recovery import SqlRecovery
from .tables import SCHEMA_REVISION, UTCDateTime, events, runs, steps

_TERMINAL = [s.value for s in TERMINAL]
_no_lease = {"lease_owner": None, "lease_until": None}
_UNFINISHED_REMOTE = [StepStatus.SCHEDULED.value, StepStatus.RUNNING.value]


P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="SqlStore")


def reconnecting(
    budget: Callable[[SqlStore], float],
) -> Callable[[Callable[Concatenate[S, P], T]], Callable[Concatenate[S, P], T]]:
    """For the compare-and-sets that are safe to repeat (create, claim, commit of a pass,
    renew, finish): a dropped connection (a database restart, a failover) is tried again on
    a fresh one, with backoff, for `budget(store)` seconds, instead of failing the step or
    pass it belonged to. A repeat after an attempt that did land finds it done: creating
    finds the run, claiming by the same owner takes it again, finishing is first-write-wins."""

    def decorate(
        method: Callable[Concatenate[S, P], T],
    ) -> Callable[Concatenate[S, P], T]:
        @functools.wraps(method)
        def wrapper(store: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return retrying(
                lambda: method(store, *args, **kwargs),
                retry_on=StoreUnavailableError,
                budget=budget(store),
                what=f"{method.__name__} on the run store",
            )

        return wrapper

    return decorate


def writes_budget(store: SqlStore) -> float:
    return store.reconnect_for


def _renewals(store: SqlStore) -> float:
    # Short: the heartbeat renews every other lease in the same thread, and tries again at
    # its next beat anyway.
    return min(store.reconnect_for, 2.0)


def display_url(url: str | sa.URL) -> str:
    """The URL without its password, for messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


def unavailable(exc: DBAPIError, where: str) -> StoreUnavailableError:
    """One line saying what the driver said (its messages run over several lines)."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return StoreUnavailableError(f"run store {where}: {reason}")


class SqlStore(SqlControl, SqlRecovery, RunStore):
    # How long an idempotent write keeps trying through a dropped connection (seconds): well
    # inside the step and run leases, which the heartbeat keeps renewing meanwhile.
    reconnect_for: float = 10.0

    def __init__(self, engine: sa.Engine, url: str, *, upgrade: bool = False) -> None:
        """Open the store, checking its schema (`schema.prepare`): `upgrade` lets an older
        schema be migrated in place instead of refused. `url`: as the user gave it, for
        messages (without its password)."""
        self.engine = engine
        self.where = display_url(url)
        with self._write() as conn:
            self._lock_schema(conn)
            self.schema_upgrade = schema.prepare(conn, self.where, upgrade=upgrade)
        self.schema_revision = SCHEMA_REVISION

    # Backends override these two: how a write transaction begins, and how concurrent
    # processes creating the schema at once are kept from colliding.
    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._translated(), self.engine.begin() as conn:
            yield conn

    def _lock_schema(self, conn: sa.Connection) -> None:
        pass

    @contextmanager
    def _single(self) -> Iterator[sa.Connection]:
        """For one statement, atomic on its own: backends may skip BEGIN and COMMIT."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._translated(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Connection-level failures (server down, connection dropped, database missing)
        become `StoreUnavailableError`; errors about the statement itself stay as they are."""
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise unavailable(exc, self.where) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise unavailable(exc, self.where) from exc
            raise

    def close(self) -> None:
        self.engine.dispose()

    def detach_after_fork(self) -> None:
        self.engine.dispose(close=False)

    # -- runs ------------------------------------------------------------------------------

    @reconnecting(writes_budget)
    def create_run(self, run: Run) -> None:
        try:
            with self._write() as conn:
                conn.execute(runs.insert().values(run_values(run)))
        except IntegrityError:
            raise RunExistsError(f"a run with id {run.id!r} already exists") from None

    @staticmethod
    def _step_rows(conn: sa.Connection, run_id: str) -> Sequence[Mapping[Any, Any]]:
        # All of a run's steps in one query: a pass never reads step by step.
        return conn.execute(q.STEP_ROWS, {"p_run_id": run_id}).mappings().all()

    def get_run(self, run_id: str, *, steps: bool = True) -> Run | None:
        with self._read() as conn:
            row = conn.execute(q.RUN_ROW, {"p_run_id": run_id}).mappings().first()
            if row is None:
                return None
            return run_from_row(row, self._step_rows(conn, run_id) if steps else ())

    def list_runs(
        self, workflow: str | None = None, status: RunStatus | None = None, limit: int = 100
    ) -> list[Run]:
        query = runs.select().order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if status is not None:
            query = query.where(runs.c.status == RunStatus(status).value)
        with self._read() as conn:
            return [run_from_row(r) for r in conn.execute(query).mappings()]

    def purge_runs(
        self, finished_before: datetime, statuses: Collection[RunStatus], limit: int
    ) -> int:
        wanted = [s.value for s in statuses if s in TERMINAL]
        if not wanted:
            return 0
        with self._write() as conn:
            ids = list(
                conn.execute(
                    sa.select(runs.c.id)
                    .where(runs.c.status.in_(wanted), runs.c.completed_at < finished_before)
                    .order_by(runs.c.completed_at)
                    .limit(limit)
                ).scalars()
            )
            if not ids:
                return 0
            # The status is checked again as the rows are deleted: a run resumed since the
            # SELECT is not finished any more, and keeps its steps.
            gone = list(
                conn.execute(
                    runs.delete()
                    .where(runs.c.id.in_(ids), runs.c.status.in_(wanted))
                    .returning(runs.c.id)
                ).scalars()
            )
            if gone:  # ON DELETE CASCADE took them already where foreign keys are enforced
                conn.execute(events.delete().where(events.c.run_id.in_(gone)))
                conn.execute(steps.delete().where(steps.c.run_id.in_(gone)))
            return len(gone)

    # -- passes ----------------------------------------------------------------------------

    @staticmethod
    def _lease_free(now: datetime) -> sa.ColumnElement[bool]:
        return q.lease_free(sa.literal(now, UTCDateTime))

    @reconnecting(writes_budget)
    def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime, *, timer: bool = True
    ) -> PassClaim | ClaimRefused:
        values = {"p_run_id": run_id, "p_owner": owner, "p_now": now, "p_lease_until": lease_until}
        with self._write() as conn:
            row = conn.execute(q.CLAIM_RUN[timer], values).mappings().first()
            if row is None:
                return self._claim_refused(conn, run_id, now)
            step_rows = self._step_rows(conn, run_id)
        return PassClaim(run_from_row(row, step_rows), row["requested"])

    @staticmethod
    def _claim_refused(conn: sa.Connection, run_id: str, now: datetime) -> ClaimRefused:
        """Why a claim matched nothing: one read of the run."""
        row = conn.execute(q.CLAIM_REFUSED, {"p_run_id": run_id, "p_now": now}).first()
        if row is None:
            return ClaimRefused.MISSING
        if RunStatus(row[0]) not in claimable():
            return ClaimRefused.FINISHED
        return ClaimRefused.ANSWERED if row[1] == row[2] and row[3] else ClaimRefused.BUSY

    @reconnecting(writes_budget)
    def commit_pass(
        self,
        run_id: str,
        owner: str,
        now: datetime,
        lease_until: datetime,
        steps: Sequence[StepRun] = (),
        patch: RunPatch | None = None,
        release: int | None = None,
        *,
        children: Sequence[Run] = (),
        consumed: Sequence[tuple[int, str]] = (),
        claimed: tuple[str, str, datetime] | None = None,
    ) -> bool:
        values: dict[str, Any] = {
            "p_run_id": run_id, "p_owner": owner, "p_now": now, "p_lease_until": lease_until,
        }  # fmt: skip
        if patch is not None:
            values.update(
                p_waiting_for=patch.waiting_for,
                p_output=None if patch.output is None else dumps(patch.output),
                p_error=patch.error.model_dump_json() if patch.error else None,
                p_completed_at=patch.completed_at,
            )
        if release is not None:
            values["p_done"] = release
        query = q.commit_pass(patch.status if patch else None, release is not None)
        with self._write() as conn:
            # This UPDATE is also the fence: it matches only while `owner` holds the lease.
            held = conn.execute(query, values).mappings().first()
            if held is None:
                self._explain_refused_commit(conn, run_id, owner, patch)
            assert held is not None
            requested = held["requested"]
            for child in children:
                exists = sa.select(runs.c.id).where(runs.c.id == child.id)
                if conn.execute(exists).first() is None:
                    conn.execute(runs.insert().values(run_values(child)))
            for event_id, step_name in consumed:
                conn.execute(
                    events.update()
                    .where(events.c.id == event_id, events.c.consumed_by.is_(None))
                    .values(consumed_by=step_name)
                )
            if patch is not None and patch.status in TERMINAL and held["parent_run_id"]:
                self._finish_parent_step(
                    conn, held["parent_run_id"], held["parent_step"], run_id, patch, now
                )
            if steps:
                rows = [step_values(s) | {"dispatched_at": now, **_no_lease} for s in steps]
                if claimed is not None:
                    name, holder, until = claimed
                    for row in rows:
                        if row["name"] == name:
                            row.update(lease_owner=holder, lease_until=until)
                conn.execute(q.upsert_steps(self.dialect_insert), rows)
        return release is not None and requested == release

    # The dialect's INSERT construct; SQLite's and PostgreSQL's both offer
    # ON CONFLICT DO UPDATE ... WHERE, which makes the step upsert one statement.
    dialect_insert: Callable[[sa.Table], Any]

    def _finish_parent_step(
        self,
        conn: sa.Connection,
        parent_id: str,
        parent_step: str,
        child_id: str,
        patch: RunPatch,
        now: datetime,
    ) -> None:
        parent_cancelling = conn.execute(
            sa.select(runs.c.cancel_requested).where(runs.c.id == parent_id)
        ).scalar_one_or_none()
        if patch.status is RunStatus.CANCELLED and parent_cancelling is not None:
            # Cancelled by the parent's own cancellation: the parent stops at its cancellation
            # point instead of seeing a failed step.
            self._request_pass(conn, parent_id, now)
            return
        error = None
        if patch.status is not RunStatus.COMPLETED:
            cause = patch.error.message if patch.error else patch.status.value
            kind = "Cancelled" if patch.status is RunStatus.CANCELLED else "Failed"
            error = ErrorInfo(
                type=f"ChildWorkflow{kind}",
                message=f"child run {child_id} {patch.status.value}: {cause}",
                step=parent_step,
            )
        if conn.execute(
            steps.update()
            .where(
                steps.c.run_id == parent_id,
                steps.c.name == parent_step,
                steps.c.status == StepStatus.WAITING.value,
            )
            .values(
                status=(StepStatus.FAILED if error else StepStatus.SUCCEEDED).value,
                result=None if error or patch.output is None else dumps(patch.output),
                error=error.model_dump_json() if error else None,
                completed_at=now,
            )
        ).rowcount:
            self._request_pass(conn, parent_id, now)

    def _explain_refused_commit(
        self, conn: sa.Connection, run_id: str, owner: str, patch: RunPatch | None
    ) -> None:
        row = conn.execute(
            sa.select(runs.c.status, runs.c.lease_owner).where(runs.c.id == run_id)
        ).first()
        if row is None or row.lease_owner != owner or patch is None:
            raise LeaseLostError(f"run {run_id!r} is no longer held by this pass")
        raise InvalidTransitionError(row.status, patch.status.value)

    @reconnecting(_renewals)
    def renew_run_lease(self, run_id: str, owner: str, lease_until: datetime) -> bool:
        values = {"p_run_id": run_id, "p_owner": owner, "p_lease_until": lease_until}
        with self._single() as conn:
            return bool(conn.execute(q.RENEW_RUN, values).rowcount)

    def _request_pass(self, conn: sa.Connection, run_id: str, now: datetime) -> bool:
        return bool(conn.execute(q.REQUEST_PASS, {"p_run_id": run_id, "p_now": now}).rowcount)

    def request_pass(self, run_id: str, now: datetime) -> bool:
        with self._single() as conn:
            return self._request_pass(conn, run_id, now)

    # -- steps -----------------------------------------------------------------------------

    @reconnecting(writes_budget)
    def claim_step(
        self, run_id: str, name: str, owner: str, now: datetime, lease_until: datetime
    ) -> StepRun | None:
        values = {
            "p_run_id": run_id, "p_name": name, "p_owner": owner, "p_now": now,
            "p_lease_until": lease_until,
        }  # fmt: skip
        with self._single() as conn:
            row = conn.execute(q.CLAIM_STEP, values).mappings().first()
        return step_from_row(row) if row else None

    @reconnecting(_renewals)
    def renew_step_lease(self, run_id: str, name: str, owner: str, lease_until: datetime) -> bool:
        values = {
            "p_run_id": run_id,
            "p_name": name,
            "p_owner": owner,
            "p_lease_until": lease_until,
        }
        with self._single() as conn:
            return bool(conn.execute(q.RENEW_STEP, values).rowcount)

    @staticmethod
    def _put_back(conn: sa.Connection, run_id: str, name: str, owner: str, **values: Any) -> bool:
        """`owner`'s running step back to scheduled (with `values`); False if not its own."""
        return bool(
            conn.execute(
                steps.update()
                .where(
                    steps.c.run_id == run_id,
                    steps.c.name == name,
                    steps.c.status == StepStatus.RUNNING.value,
                    steps.c.lease_owner == owner,
                )
                .values(
                    status=StepStatus.SCHEDULED.value, lease_owner=None, lease_until=None, **values
                )
            ).rowcount
        )

    @reconnecting(writes_budget)
    def release_owner(self, owner: str, now: datetime) -> tuple[list[StepNeeded], list[PassNeeded]]:
        held = (steps.c.status == StepStatus.RUNNING.value, steps.c.lease_owner == owner)
        with self._write() as conn:
            rows = (
                conn.execute(
                    sa.select(steps, runs.c.workflow)
                    .join(runs, runs.c.id == steps.c.run_id)
                    .where(*held)
                )
                .mappings()
                .all()
            )
            released = [
                StepNeeded(row["workflow"], step_from_row({**row, "status": StepStatus.SCHEDULED}))
                for row in rows
                if self._put_back(conn, row["run_id"], row["name"], owner, dispatched_at=now)
            ]
            dropped = conn.execute(
                runs.update()
                .where(runs.c.status == RunStatus.RUNNING.value, runs.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
                .returning(runs.c.id, runs.c.workflow)
            ).all()
        return released, [PassNeeded(run_id, workflow) for run_id, workflow in dropped]

    def _errors_with(self, conn: sa.Connection, run_id: str, name: str, error: ErrorInfo) -> str:
        current = conn.execute(
            q.STEP_ERRORS, {"p_run_id": run_id, "p_name": name}
        ).scalar_one_or_none()
        return dumps([*(loads(current) or []), error.model_dump(mode="json")])

    def retry_step(
        self,
        run_id: str,
        name: str,
        owner: str,
        now: datetime,
        error: ErrorInfo,
        retry_at: datetime,
        *,
        sent: bool = True,
    ) -> bool:
        with self._write() as conn:
            return self._put_back(
                conn, run_id, name, owner,
                errors=self._errors_with(conn, run_id, name, error),
                wake_at=retry_at,
                # No message at all for a long delay: the sweeper sends one when due.
                dispatched_at=now if sent else None,
            )  # fmt: skip

    @staticmethod
    def _finish_values(
        run_id: str, name: str, now: datetime, result: object, error: ErrorInfo | None
    ) -> dict[str, Any]:
        return {
            "p_run_id": run_id,
            "p_name": name,
            "p_now": now,
            "p_status": (StepStatus.FAILED if error else StepStatus.SUCCEEDED).value,
            "p_result": None if error or result is None else dumps(result),
            "p_error": error.model_dump_json() if error else None,
        }

    @reconnecting(writes_budget)
    def finish_step(
        self,
        run_id: str,
        name: str,
        now: datetime,
        result: object = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        values = self._finish_values(run_id, name, now, result, error)
        with self._write() as conn:
            if error is not None:
                values["p_errors"] = self._errors_with(conn, run_id, name, error)
            recorded = conn.execute(q.FINISH_STEP[error is not None], values).rowcount
            if recorded:
                self._request_pass(conn, run_id, now)
            return bool(recorded)

    @reconnecting(writes_budget)
    def finish_step_and_claim(
        self,
        run_id: str,
        name: str,
        now: datetime,
        result: object,
        error: ErrorInfo | None,
        owner: str,
        lease_until: datetime,
    ) -> tuple[bool, PassClaim | ClaimRefused]:
        values = self._finish_values(run_id, name, now, result, error)
        claim_values = {
            "p_run_id": run_id, "p_owner": owner, "p_now": now, "p_lease_until": lease_until,
        }  # fmt: skip
        with self._write() as conn:
            if error is not None:
                values["p_errors"] = self._errors_with(conn, run_id, name, error)
            if not conn.execute(q.FINISH_STEP[error is not None], values).rowcount:
                return False, ClaimRefused.ANSWERED
            # The outcome is news (a request) and the claim answers it: one UPDATE for both.
            row = conn.execute(q.REQUEST_AND_CLAIM_RUN, claim_values).mappings().first()
            if row is None:
                self._request_pass(conn, run_id, now)  # for whoever holds the run
                return True, ClaimRefused.BUSY
        return True, PassClaim(run_from_row(row), row["requested"], history_loaded=False)

    def load_steps(self, run_id: str) -> list[StepRun]:
        with self._read() as conn:
            return [step_from_row(r) for r in self._step_rows(conn, run_id)]

    def get_step(self, run_id: str, name: str) -> StepRun | None:
        with self._read() as conn:
            row = conn.execute(q.STEP_ROW, {"p_run_id": run_id, "p_name": name}).mappings().first()
        return step_from_row(row) if row else None
