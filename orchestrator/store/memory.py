"""An in-process store for unit tests and the in-process test runner."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import LeaseLostError, RunExistsError
from ..models import ErrorInfo, Run, RunPatch, RunStatus, StepRun, StepStatus
from ..states import TERMINAL, claimable, transition
from .base import ClaimRefused, PassClaim, PassNeeded, RunStore


@dataclass
class _StepRow:
    step: StepRun
    lease_owner: str | None = None
    lease_until: datetime | None = None
    dispatched_at: datetime | None = None


@dataclass
class _RunRow:
    run: Run
    steps: dict[str, _StepRow] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_until: datetime | None = None
    requested: int = 1
    done: int = 0
    requested_at: datetime | None = None

    def snapshot(self, with_steps: bool = True) -> Run:
        steps = sorted((r.step for r in self.steps.values()), key=lambda s: (s.seq, s.name))
        return self.run.model_copy(
            deep=True,
            update={"steps": [s.model_copy(deep=True) for s in steps] if with_steps else []},
        )

    def lease_free(self, now: datetime) -> bool:
        return self.lease_owner is None or (self.lease_until is not None and self.lease_until < now)


class MemoryStore(RunStore):
    def __init__(self) -> None:
        self._runs: dict[str, _RunRow] = {}
        self._lock = threading.RLock()

    def create_run(self, run: Run) -> None:
        with self._lock:
            if run.id in self._runs:
                raise RunExistsError(f"a run with id {run.id!r} already exists")
            self._runs[run.id] = _RunRow(
                run.model_copy(deep=True, update={"steps": []}), requested_at=run.created_at
            )

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            row = self._runs.get(run_id)
            return row.snapshot() if row else None

    def list_runs(
        self, workflow: str | None = None, status: RunStatus | None = None, limit: int = 100
    ) -> list[Run]:
        with self._lock:
            rows = [
                r.snapshot(with_steps=False)
                for r in self._runs.values()
                if (workflow is None or r.run.workflow == workflow)
                and (status is None or r.run.status == status)
            ]
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return rows[:limit]

    def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> PassClaim | ClaimRefused:
        with self._lock:
            row = self._runs.get(run_id)
            if row is None:
                return ClaimRefused.MISSING
            if row.run.status not in claimable():
                return ClaimRefused.FINISHED
            if not row.lease_free(now):
                return ClaimRefused.BUSY
            row.lease_owner, row.lease_until = owner, lease_until
            row.run.status = transition(row.run.status, RunStatus.RUNNING)
            row.run.waiting_for = None
            row.run.started_at = row.run.started_at or now
            row.run.updated_at = now
            return PassClaim(row.snapshot(), row.requested)

    def _held(self, run_id: str, owner: str) -> _RunRow:
        row = self._runs.get(run_id)
        if row is None or row.lease_owner != owner:
            raise LeaseLostError(f"run {run_id!r} is no longer held by this pass")
        return row

    def commit_pass(
        self,
        run_id: str,
        owner: str,
        now: datetime,
        lease_until: datetime,
        steps: Sequence[StepRun] = (),
        patch: RunPatch | None = None,
        release: int | None = None,
    ) -> bool:
        with self._lock:
            row = self._held(run_id, owner)
            for step in steps:
                existing = row.steps.get(step.name)
                if existing is None:
                    row.steps[step.name] = _StepRow(step.model_copy(deep=True), dispatched_at=now)
                elif not existing.step.status.finished:
                    existing.step = step.model_copy(deep=True)
            if patch is not None:
                row.run.status = transition(row.run.status, patch.status)
                row.run.waiting_for = patch.waiting_for
                row.run.output = patch.output
                row.run.error = patch.error
                row.run.completed_at = patch.completed_at
            row.run.updated_at = now
            row.lease_until = lease_until
            if release is None:
                return False
            row.lease_owner, row.lease_until, row.done = None, None, release
            return row.requested == release

    def renew_run_lease(self, run_id: str, owner: str, lease_until: datetime) -> bool:
        with self._lock:
            row = self._runs.get(run_id)
            if row is None or row.lease_owner != owner:
                return False
            row.lease_until = lease_until
            return True

    def request_pass(self, run_id: str, now: datetime) -> bool:
        with self._lock:
            row = self._runs.get(run_id)
            if row is None or row.run.status in TERMINAL:
                return False
            row.requested += 1
            row.requested_at = now
            return True

    def claim_step(
        self, run_id: str, name: str, owner: str, now: datetime, lease_until: datetime
    ) -> StepRun | None:
        with self._lock:
            row = self._runs.get(run_id)
            if row is None or row.run.status in TERMINAL:
                return None
            srow = row.steps.get(name)
            if srow is None:
                return None
            status = srow.step.status
            lapsed = srow.lease_until is not None and srow.lease_until < now
            if not (status == StepStatus.SCHEDULED or (status == StepStatus.RUNNING and lapsed)):
                return None
            srow.lease_owner, srow.lease_until = owner, lease_until
            srow.step.status = StepStatus.RUNNING
            srow.step.attempts += 1
            srow.step.started_at = now
            return srow.step.model_copy(deep=True)

    def renew_step_lease(self, run_id: str, name: str, owner: str, lease_until: datetime) -> bool:
        with self._lock:
            srow = self._step_row(run_id, name)
            if srow is None or srow.lease_owner != owner or srow.step.status != StepStatus.RUNNING:
                return False
            srow.lease_until = lease_until
            return True

    def _step_row(self, run_id: str, name: str) -> _StepRow | None:
        row = self._runs.get(run_id)
        return row.steps.get(name) if row else None

    def finish_step(
        self,
        run_id: str,
        name: str,
        now: datetime,
        result: object = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        with self._lock:
            srow = self._step_row(run_id, name)
            if srow is None or srow.step.status.finished:
                return False
            srow.step.status = StepStatus.FAILED if error else StepStatus.SUCCEEDED
            srow.step.result = None if error else result
            srow.step.error = error
            srow.step.completed_at = now
            srow.lease_owner = srow.lease_until = None
            self.request_pass(run_id, now)
            return True

    def get_step(self, run_id: str, name: str) -> StepRun | None:
        with self._lock:
            srow = self._step_row(run_id, name)
            return srow.step.model_copy(deep=True) if srow else None

    def _active_steps(self) -> list[tuple[_RunRow, _StepRow]]:
        return [
            (row, srow)
            for row in self._runs.values()
            if row.run.status not in TERMINAL
            for srow in row.steps.values()
        ]

    def reclaim_lapsed_steps(self, now: datetime, limit: int = 100) -> list[StepRun]:
        with self._lock:
            out: list[StepRun] = []
            for _, srow in self._active_steps():
                lapsed = srow.lease_until is not None and srow.lease_until < now
                if srow.step.status == StepStatus.RUNNING and lapsed and len(out) < limit:
                    srow.step.status = StepStatus.SCHEDULED
                    srow.lease_owner = srow.lease_until = None
                    srow.dispatched_at = now
                    out.append(srow.step.model_copy(deep=True))
            return out

    def stale_scheduled_steps(
        self, now: datetime, older_than: datetime, limit: int = 100
    ) -> list[StepRun]:
        with self._lock:
            out: list[StepRun] = []
            for _, srow in self._active_steps():
                sent = srow.dispatched_at
                scheduled = srow.step.status == StepStatus.SCHEDULED
                if scheduled and sent is not None and sent < older_than and len(out) < limit:
                    srow.dispatched_at = now
                    out.append(srow.step.model_copy(deep=True))
            return out

    def wake_due_timers(
        self, now: datetime, due_before: datetime, limit: int = 100
    ) -> list[PassNeeded]:
        with self._lock:
            woken: list[PassNeeded] = []
            for row, srow in self._active_steps():
                step = srow.step
                due = step.wake_at is not None and step.wake_at <= due_before
                quiet = row.requested == row.done
                if step.status == StepStatus.SLEEPING and due and quiet and len(woken) < limit:
                    self.request_pass(row.run.id, now)
                    woken.append(PassNeeded(row.run.id, row.run.workflow))
            return woken

    def runs_needing_pass(
        self, now: datetime, older_than: datetime, limit: int = 100
    ) -> list[PassNeeded]:
        with self._lock:
            out: list[PassNeeded] = []
            for row in self._runs.values():
                asked = row.requested_at
                if (
                    row.run.status not in TERMINAL
                    and row.requested > row.done
                    and asked is not None
                    and asked < older_than
                    and row.lease_free(now)
                    and len(out) < limit
                ):
                    row.requested_at = now
                    out.append(PassNeeded(row.run.id, row.run.workflow))
            return out
