"""The replay engine: one orchestrator pass of one run. Knows nothing of Celery."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .clock import Clock, utcnow
from .context import WorkflowContext
from .definitions import REGISTRY, Registry, WorkflowDefinition
from .dispatch import Dispatch, Dispatcher, PassDispatch, StepDispatch
from .eager import ClaimedStep, EagerDispatcher
from .errors import (
    InvalidTransitionError,
    PassAborted,
    SerializationError,
    StepFailedError,
    WorkflowAsyncException,
    WorkflowCancelled,
    WorkflowError,
)
from .history import HistoryCache
from .leases import LeaseKeeper, NoLeaseKeeper
from .manifest import WorkflowManifest
from .models import ErrorInfo, Run, RunPatch, RunStatus, StepRun, StepStatus
from .replay import PassState
from .serialization import model_dump, to_jsonable
from .states import TERMINAL
from .store import ClaimRefused, PassClaim, RunStore

log = logging.getLogger(__name__)


def publish(dispatcher: Dispatcher, messages: Sequence[Dispatch], what: str = "") -> None:
    """Publish after the store commit. A failure is one warning line, not an error: the store
    already holds the intent, and a sweeper re-drives it once the broker is back."""
    if not messages:
        return
    try:
        dispatcher.dispatch(messages)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        log.warning(
            "%scould not publish %d message(s) (%s: %s); the sweeper of a worker serving the "
            "workflow will send them when the broker is reachable",
            f"{what}, but " if what else "",
            len(messages),
            type(exc).__name__,
            reason,
        )
        log.debug("publish failure", exc_info=True)


def child_run_id(parent_run_id: str, step: str) -> str:
    """Derived from the parent and its step, so creating a child twice finds the first."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"wf-child:{parent_run_id}/{step}").hex


@dataclass(frozen=True)
class _Eager:
    message: StepDispatch
    step: StepRun


class Engine:
    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        *,
        registry: Registry = REGISTRY,
        clock: Clock = utcnow,
        run_lease: timedelta = timedelta(seconds=60),
        max_countdown: timedelta = timedelta(minutes=5),
        keeper: LeaseKeeper | None = None,
        eager: EagerDispatcher | None = None,
        step_lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        # Eager execution (orchestrator.eager): `dispatcher` is this same object then.
        self.eager = eager
        self.step_lease = step_lease
        self.history = HistoryCache()
        self.registry = registry
        self.clock = clock
        self.run_lease = run_lease
        # Longer timers are left to the sweeper: a Redis broker redelivers an ETA message held
        # past its visibility timeout, and every held ETA message occupies worker memory.
        self.max_countdown = max_countdown
        self.keeper = keeper or NoLeaseKeeper()

    def run_pass(
        self,
        run_id: str,
        workflow: str | None = None,
        *,
        owner: str | None = None,
        timer: bool = True,
    ) -> RunStatus | ClaimRefused:
        """Replay the run once; return its status after the pass (or why it was skipped).

        `workflow`, when the message names it, is checked first: a process that has no
        definition of it leaves the run alone (its own service's workers will run it) instead
        of failing it for good. `owner` names this pass in the store (a fresh id by default;
        the transport may derive it from the delivery, see `StepExecutor.execute`). `timer`:
        the message is a timer's wake-up; any other message finding every request of the run
        answered is a duplicate, refused without a replay."""
        if workflow is not None and workflow not in self.registry.workflows:
            log.error(
                "pass of run %s skipped: this process does not serve workflow %r (serves: %s); "
                "the run is left for a worker of its own service",
                run_id,
                workflow,
                ", ".join(sorted(self.registry.workflows)) or "none",
                extra={"run_id": run_id, "workflow": workflow},
            )
            return ClaimRefused.UNSERVED
        owner = owner or uuid.uuid4().hex
        now = self.clock()
        claim = self.store.claim_run(run_id, owner, now, now + self.run_lease, timer=timer)
        if isinstance(claim, ClaimRefused):
            log.debug("pass of run %s skipped: %s", run_id, claim.value)
            return claim
        return self.continue_pass(claim, owner)

    def continue_pass(
        self, claim: PassClaim, owner: str, recorded: StepRun | None = None
    ) -> RunStatus:
        """Replay a run `owner` has claimed, commit what the pass decided, and send (or, with
        eager execution, keep here) what comes next. `recorded`: the step whose outcome the
        claim answers, if this process recorded it (orchestrator.history)."""
        if not claim.history_loaded:
            claim = self._with_history(claim, recorded)
        run = claim.run
        run_id = run.id

        def renew() -> bool:
            return self.store.renew_run_lease(run_id, owner, self.clock() + self.run_lease)

        with self.keeper.hold(renew, f"the pass lease on run {run_id}") as held:
            patch, state = self._replay(claim, owner)
            held.finishing()  # this commit gives the lease up
            now = self.clock()
            messages = [m for m in state.dispatches if self._keep(m, now)] if state else []
            eager = self._eager_step(messages, state, now, owner)
            self.history.forget(run_id)  # until this pass has committed
            answered = self.store.commit_pass(
                run_id, owner, now, now + self.run_lease,
                state.writes if state else [], patch, release=claim.requested,
                children=state.children if state else [],
                consumed=state.consumed if state else [],
                claimed=(eager.step.name, owner, now + self.step_lease) if eager else None,
            )  # fmt: skip
        if answered and state is not None and patch.status not in TERMINAL and self.eager:
            self.history.remember(run_id, claim.requested, state.steps)
        if eager is not None:
            assert self.eager is not None
            messages.remove(eager.message)
            self.eager.keep(ClaimedStep(eager.step, run.workflow, owner))
        if patch.status in TERMINAL:
            if run.parent_run_id and run.parent_workflow:
                messages.append(PassDispatch(run.parent_run_id, run.parent_workflow))
        elif not answered:
            # News arrived during the pass (a step finished): look again with a fresh pass.
            messages.append(PassDispatch(run_id, run.workflow))
        publish(self.dispatcher, messages)
        return patch.status

    def _with_history(self, claim: PassClaim, recorded: StepRun | None) -> PassClaim:
        steps = None
        if recorded is not None:
            steps = self.history.recall(claim.run.id, claim.requested, recorded)
        if steps is None:
            steps = self.store.load_steps(claim.run.id)
        return PassClaim(claim.run.model_copy(update={"steps": steps}), claim.requested)

    def _eager_step(
        self, messages: list[Dispatch], state: PassState | None, now: datetime, owner: str
    ) -> _Eager | None:
        """The step this pass may commit already claimed, to run here next (eager execution):
        the first one scheduled, if this process takes it."""
        if self.eager is None or state is None:
            return None
        pending = {w.name: w for w in state.writes}  # not committed yet (no inline flush)
        for message in messages:
            if not isinstance(message, StepDispatch) or message.step not in pending:
                continue
            if self.eager.takes(message):
                scheduled = pending[message.step]
                running = scheduled.model_copy(
                    update={"status": StepStatus.RUNNING, "attempts": 1, "started_at": now}
                )
                state.writes = [running if w is scheduled else w for w in state.writes]
                state.steps[running.name] = running
                return _Eager(message, running)
        return None

    def _keep(self, message: Dispatch, now: datetime) -> bool:
        return message.eta is None or message.eta - now <= self.max_countdown

    def _state(
        self,
        run: Run,
        owner: str,
        manifest: WorkflowManifest,
        definition: WorkflowDefinition[Any, Any],
    ) -> PassState:
        def commit_now(
            writes: list[StepRun], children: list[Run], consumed: list[tuple[int, str]]
        ) -> None:
            now = self.clock()
            self.store.commit_pass(
                run.id, owner, now, now + self.run_lease, writes,
                children=children, consumed=consumed,
            )  # fmt: skip

        def child_run(workflow: str, data: Any, step: str) -> tuple[Run, bool]:
            child_id = child_run_id(run.id, step)
            existing = self.store.get_run(child_id)
            if existing is not None:
                return existing, False
            definition = self.registry.workflow(workflow)
            return definition.new_run(data, child_id, self.clock(), parent=run, step=step), True

        def resume_child(child_id: str) -> None:
            with contextlib.suppress(InvalidTransitionError):  # resumed already
                self.store.resume_run(child_id, self.clock())

        return PassState(
            run=run,
            manifest=manifest,
            now=self.clock,
            commit_now=commit_now,
            load_events=lambda: self.store.pending_events(run.id),
            child_run=child_run,
            resume_child=resume_child,
            default_retry=definition.retry,
        )

    def _replay(self, claim: PassClaim, owner: str) -> tuple[RunPatch, PassState | None]:
        run = claim.run
        try:
            definition = self.registry.workflow(run.workflow)
            state = self._state(run, owner, definition.manifest(), definition)
        except WorkflowError as exc:  # unknown workflow, stale build: nothing to replay
            return self._failed(exc, None, run.id), None
        ctx = WorkflowContext(state)
        try:
            output = definition.fn(ctx, definition.validate_input(run.input))
        except (Exception, WorkflowCancelled, WorkflowAsyncException, PassAborted) as exc:
            return self._ended(ctx, exc), state
        if ctx.broken or ctx.fatal or ctx.cancelled or ctx.paused:  # the signal was swallowed
            return self._ended(ctx, None), state
        try:
            result = to_jsonable(model_dump(output), f"output of workflow {run.workflow!r}")
        except SerializationError as exc:
            return self._failed(exc, None, run.id), state
        patch = RunPatch(status=RunStatus.COMPLETED, output=result, completed_at=self.clock())
        return patch, state

    def _ended(self, ctx: WorkflowContext, exc: BaseException | None) -> RunPatch:
        """How a pass ends when the workflow did not return normally. The context's own record
        wins over what user code raised while unwinding (a `finally` that fails on a result
        that is not there yet must not fail a run that is only paused)."""
        if ctx.broken is not None:
            raise ctx.broken  # commit nothing more; the run is re-driven
        if ctx.fatal is not None:
            return self._failed(ctx.fatal, ctx, ctx.run_id)
        if ctx.cancelled is not None:
            return self._cancelled(ctx.cancelled.reason)
        if ctx.cancel_requested is not None and exc is not None:
            # Ended by an error while being cancelled, such as a child's cancellation seen as
            # a failed step before this pass reached a cancellation point: still cancelled.
            return self._cancelled(ctx.cancel_requested)
        if ctx.paused is not None:
            return RunPatch(status=RunStatus.PAUSED, waiting_for=ctx.paused.waiting_for)
        assert isinstance(exc, Exception), exc
        return self._failed(exc, ctx, ctx.run_id)

    def _cancelled(self, reason: str) -> RunPatch:
        error = ErrorInfo(type="Cancelled", message=reason)
        return RunPatch(status=RunStatus.CANCELLED, error=error, completed_at=self.clock())

    def _failed(self, exc: Exception, ctx: WorkflowContext | None, run_id: str) -> RunPatch:
        # Name the step that failed, or else the last one the workflow reached.
        step = exc.step if isinstance(exc, StepFailedError) else (ctx.current_step if ctx else None)
        log.warning("run %s failed at step %s: %s", run_id, step, exc, extra={"run_id": run_id})
        return RunPatch(
            status=RunStatus.FAILED,
            error=ErrorInfo.from_exception(exc, step),
            completed_at=self.clock(),
        )
