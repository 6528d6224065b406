"""The replay engine: one orchestrator pass of one run. Knows nothing of Celery."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import Clock, utcnow
from .context import PassState, WorkflowContext
from .definitions import REGISTRY, Registry
from .dispatch import Dispatch, Dispatcher, PassDispatch
from .errors import LeaseLostError, SerializationError, StepFailedError, WorkflowAsyncException
from .leases import LeaseKeeper, NoLeaseKeeper
from .models import ErrorInfo, RunPatch, RunStatus, StepRun
from .serialization import model_dump, to_jsonable
from .store import ClaimRefused, PassClaim, RunStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassOutcome:
    status: RunStatus | ClaimRefused
    waiting_for: str | None = None


def publish(dispatcher: Dispatcher, messages: Sequence[Dispatch]) -> None:
    """Publish after the store commit. A failure is logged, not raised: the store already holds
    the intent, and the sweeper re-drives it."""
    if not messages:
        return
    try:
        dispatcher.dispatch(messages)
    except Exception:
        log.exception(
            "publishing %d message(s) failed; the sweeper will re-drive them", len(messages)
        )


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
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.registry = registry
        self.clock = clock
        self.run_lease = run_lease
        # Longer timers are left to the sweeper: a Redis broker redelivers an ETA message held
        # past its visibility timeout, and every held ETA message occupies worker memory.
        self.max_countdown = max_countdown
        self.keeper = keeper or NoLeaseKeeper()

    def run_pass(self, run_id: str) -> PassOutcome:
        owner = uuid.uuid4().hex
        now = self.clock()
        claim = self.store.claim_run(run_id, owner, now, now + self.run_lease)
        if isinstance(claim, ClaimRefused):
            log.debug("pass of run %s skipped: %s", run_id, claim.value)
            return PassOutcome(claim)

        def renew() -> bool:
            return self.store.renew_run_lease(run_id, owner, self.clock() + self.run_lease)

        with self.keeper.hold(renew):
            patch, state = self._replay(claim, owner)
            now = self.clock()
            answered = self.store.commit_pass(
                run_id,
                owner,
                now,
                now + self.run_lease,
                state.writes,
                patch,
                release=claim.requested,
            )
        messages = [m for m in state.dispatches if self._keep(m, now)]
        if not answered and patch.status not in (RunStatus.COMPLETED, RunStatus.FAILED):
            # News arrived during the pass (a step finished): look again with a fresh pass.
            messages.append(PassDispatch(run_id, claim.run.workflow))
        publish(self.dispatcher, messages)
        return PassOutcome(patch.status, patch.waiting_for)

    def _keep(self, message: Dispatch, now: datetime) -> bool:
        if isinstance(message, PassDispatch) and message.eta is not None:
            return message.eta - now <= self.max_countdown
        return True

    def _replay(self, claim: PassClaim, owner: str) -> tuple[RunPatch, PassState]:
        run = claim.run

        def commit_now(writes: list[StepRun]) -> None:
            now = self.clock()
            self.store.commit_pass(run.id, owner, now, now + self.run_lease, writes)

        state = PassState(run=run, now=self.clock, commit_now=commit_now)
        ctx: WorkflowContext | None = None
        try:
            definition = self.registry.workflow(run.workflow)
            ctx = WorkflowContext(state, definition.manifest())
            output = definition.fn(ctx, definition.validate_input(run.input))
            if ctx.fatal is not None:
                raise ctx.fatal
            if ctx.paused is not None:
                raise ctx.paused
        except WorkflowAsyncException as pause:
            if ctx is not None and ctx.fatal is not None:
                return self._failed(ctx.fatal, ctx), state
            return RunPatch(status=RunStatus.PAUSED, waiting_for=pause.waiting_for), state
        except LeaseLostError:
            raise
        except Exception as exc:
            fatal = ctx.fatal if ctx is not None else None
            return self._failed(fatal or exc, ctx), state
        try:
            result = to_jsonable(model_dump(output), f"output of workflow {run.workflow!r}")
        except SerializationError as exc:
            return self._failed(exc, None), state
        return (
            RunPatch(status=RunStatus.COMPLETED, output=result, completed_at=self.clock()),
            state,
        )

    def _failed(self, exc: Exception, ctx: WorkflowContext | None) -> RunPatch:
        # Name the step that failed, or else the last one the workflow reached.
        step = exc.step if isinstance(exc, StepFailedError) else (ctx.current_step if ctx else None)
        log.info("run failed at step %s: %s", step, exc)
        return RunPatch(
            status=RunStatus.FAILED,
            error=ErrorInfo.from_exception(exc, step),
            completed_at=self.clock(),
        )
