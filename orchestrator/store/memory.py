"""An in-process store for unit tests and the in-process test runner."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import (
    InvalidTransitionError,
    LeaseLostError,
    RunExistsError,
    RunFinishedError,
    RunNotFoundError,
)
from ..models import ErrorInfo, Event, Run, RunPatch, RunStatus, StepRun, StepStatus
from ..states import TERMINAL, can_transition, claimable, transition
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
    events: list[tuple[Event, str | None]] = field(default_factory=list)  # (event, consumed_by)

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
        self._event_ids = 0

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
            if row.requested == row.done:
                row.requested += 1  # see SqlStore.claim_run
            row.requested_at = now
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
        *,
        children: Sequence[Run] = (),
        consumed: Sequence[tuple[int, str]] = (),
    ) -> bool:
        with self._lock:
            row = self._held(run_id, owner)
            if patch is not None and not can_transition(row.run.status, patch.status):
                raise InvalidTransitionError(row.run.status.value, patch.status.value)
            for child in children:
                if child.id not in self._runs:
                    self.create_run(child)
            for event_id, by in consumed:
                row.events = [
                    (e, by if e.id == event_id and taken is None else taken)
                    for e, taken in row.events
                ]
            if patch is not None and patch.status in TERMINAL and row.run.parent_run_id:
                self._finish_parent_step(row.run, patch, now)
            for step in steps:
                existing = row.steps.get(step.name)
                if existing is None:
                    row.steps[step.name] = _StepRow(step.model_copy(deep=True), dispatched_at=now)
                elif not existing.step.status.finished:
                    existing.step = step.model_copy(deep=True)
                    existing.lease_owner = existing.lease_until = None
                    existing.dispatched_at = now
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
            if srow.step.wake_at is not None and srow.step.wake_at > now:
                return None  # a retry is not taken before its delay ends
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

    def retry_step(
        self,
        run_id: str,
        name: str,
        owner: str,
        now: datetime,
        error: ErrorInfo,
        retry_at: datetime,
    ) -> bool:
        with self._lock:
            srow = self._step_row(run_id, name)
            if srow is None or srow.lease_owner != owner or srow.step.status != StepStatus.RUNNING:
                return False
            srow.step.status = StepStatus.SCHEDULED
            srow.step.errors = [*srow.step.errors, error]
            srow.step.wake_at = retry_at
            srow.lease_owner = srow.lease_until = None
            srow.dispatched_at = now
            return True

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
            if srow is None or srow.step.status not in (StepStatus.SCHEDULED, StepStatus.RUNNING):
                return False
            if error is not None:
                srow.step.errors = [*srow.step.errors, error]
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

    def _finish_parent_step(self, child: Run, patch: RunPatch, now: datetime) -> None:
        assert child.parent_run_id is not None and child.parent_step is not None
        parent = self._runs[child.parent_run_id].run
        if patch.status is RunStatus.CANCELLED and parent.cancel_requested is not None:
            self.request_pass(parent.id, now)  # see SqlStore._finish_parent_step
            return
        srow = self._step_row(child.parent_run_id, child.parent_step)
        if srow is None or srow.step.status != StepStatus.WAITING:
            return
        if patch.status is RunStatus.COMPLETED:
            srow.step.status, srow.step.result = StepStatus.SUCCEEDED, patch.output
        else:
            cause = patch.error.message if patch.error else patch.status.value
            kind = "Cancelled" if patch.status is RunStatus.CANCELLED else "Failed"
            srow.step.status = StepStatus.FAILED
            srow.step.error = ErrorInfo(
                type=f"ChildWorkflow{kind}",
                message=f"child run {child.id} {patch.status.value}: {cause}",
                step=child.parent_step,
            )
        srow.step.completed_at = now
        self.request_pass(child.parent_run_id, now)

    def _active(self, run_id: str) -> _RunRow:
        row = self._runs.get(run_id)
        if row is None:
            raise RunNotFoundError(run_id)
        if row.run.status in TERMINAL:
            raise RunFinishedError(f"run {run_id} has already {row.run.status.value}")
        return row

    def add_event(self, run_id: str, name: str, payload: object, now: datetime) -> str:
        with self._lock:
            row = self._active(run_id)
            self._event_ids += 1
            event = Event(
                id=self._event_ids, run_id=run_id, name=name, payload=payload, created_at=now
            )
            row.events.append((event, None))
            self.request_pass(run_id, now)
            return row.run.workflow

    def pending_events(self, run_id: str) -> list[Event]:
        with self._lock:
            row = self._runs.get(run_id)
            return [e.model_copy() for e, taken in row.events if taken is None] if row else []

    def request_cancel(self, run_id: str, reason: str, now: datetime) -> list[PassNeeded]:
        with self._lock:
            self._active(run_id)
            flagged: list[PassNeeded] = []
            frontier = [run_id]
            while frontier:
                for rid in frontier:
                    row = self._runs[rid]
                    row.run.cancel_requested = reason
                    self.request_pass(rid, now)
                    flagged.append(PassNeeded(rid, row.run.workflow))
                frontier = [
                    r.run.id
                    for r in self._runs.values()
                    if r.run.parent_run_id in frontier and r.run.status not in TERMINAL
                ]
            return flagged

    def resume_run(self, run_id: str, now: datetime) -> Run:
        with self._lock:
            row = self._runs.get(run_id)
            if row is None:
                raise RunNotFoundError(run_id)
            row.run.status = transition(row.run.status, RunStatus.PENDING)
            row.run.waiting_for = row.run.output = row.run.error = None
            row.run.completed_at = row.run.cancel_requested = None
            row.run.updated_at = now
            row.steps = {
                name: srow
                for name, srow in row.steps.items()
                if srow.step.status == StepStatus.SUCCEEDED
            }
            self.request_pass(run_id, now)
            return row.snapshot()

    def fork_run(self, run_id: str, new_id: str, from_step: str, now: datetime) -> Run:
        with self._lock:
            source = self._runs.get(run_id)
            if source is None:
                raise RunNotFoundError(run_id)
            if from_step not in source.steps:
                known = ", ".join(source.steps) or "none"
                raise RunNotFoundError(f"{run_id} has no step {from_step!r} (its steps: {known})")
            cut = source.steps[from_step].step.seq
            fork = Run(
                id=new_id,
                workflow=source.run.workflow,
                status=RunStatus.PENDING,
                input=source.run.input,
                version=source.run.version,
                created_at=now,
                updated_at=now,
            )
            self.create_run(fork)
            for srow in source.steps.values():
                if srow.step.seq < cut and srow.step.status.finished:
                    copy = srow.step.model_copy(deep=True, update={"run_id": new_id})
                    self._runs[new_id].steps[copy.name] = _StepRow(copy, dispatched_at=now)
            return self._runs[new_id].snapshot()

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
                sent, wake = srow.dispatched_at, srow.step.wake_at
                scheduled = srow.step.status == StepStatus.SCHEDULED
                due = wake is None or wake <= now
                late = sent is not None and (
                    sent < older_than or (wake is not None and sent < wake)
                )
                if scheduled and due and late and len(out) < limit:
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
                timer = step.status in (StepStatus.SLEEPING, StepStatus.WAITING)
                if timer and due and quiet and len(woken) < limit:
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
