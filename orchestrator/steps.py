"""Running one remote step: claim it under a lease, call the RPC, record the outcome once."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .clock import Clock, utcnow
from .definitions import REGISTRY, Registry
from .dispatch import Dispatcher, PassDispatch, StepDispatch
from .eager import ClaimedPass, EagerDispatcher
from .engine import publish
from .errors import StaleBuildError, StepTimeoutError
from .leases import LeaseKeeper, NoLeaseKeeper
from .models import ErrorInfo, StepRun, StepStatus
from .retry import StepPolicy
from .serialization import to_jsonable
from .store import PassClaim, RunStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """What a running RPC may ask about itself (`current_step()`)."""

    run_id: str
    workflow: str
    step: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts of this step: hand it to external APIs to dedupe retries."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wf:{self.run_id}/{self.step}"))


_current: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar("wf_step", default=None)


def current_step() -> StepInfo | None:
    """The step being executed by this worker thread, if any."""
    return _current.get()


@contextmanager
def _running(info: StepInfo) -> Iterator[None]:
    token = _current.set(info)
    try:
        yield
    finally:
        _current.reset(token)


class StepOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"  # failed; scheduled again after its policy's delay
    SKIPPED = "skipped"  # finished already, or another worker holds it
    LOST = "lost"  # another worker recorded it first


class StepExecutor:
    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        *,
        registry: Registry = REGISTRY,
        clock: Clock = utcnow,
        lease: timedelta = timedelta(seconds=30),
        max_countdown: timedelta = timedelta(minutes=5),
        keeper: LeaseKeeper | None = None,
        eager: EagerDispatcher | None = None,
        run_lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self.max_countdown = max_countdown
        # Eager execution (orchestrator.eager): `dispatcher` is this same object then.
        self.eager = eager
        self.run_lease = run_lease
        self.store = store
        self.dispatcher = dispatcher
        self.registry = registry
        self.clock = clock
        self.lease = lease
        self.keeper = keeper or NoLeaseKeeper()

    def execute(
        self, run_id: str, step_name: str, *, workflow: str, rpc: str, owner: str | None = None
    ) -> StepOutcome:
        """Claim the step, run its RPC and record the outcome. `owner` names this attempt in
        the store (the transport may derive it from the delivery, so that its supervisor can
        release the step if the process running it dies); a fresh id by default."""
        owner = owner or uuid.uuid4().hex
        now = self.clock()
        step = self.store.claim_step(run_id, step_name, owner, now, now + self.lease)
        if step is None:
            existing = self.store.get_step(run_id, step_name)
            if existing is not None and existing.status.finished:
                # A redelivered message: the orchestrator may never have heard of the result.
                publish(self.dispatcher, [PassDispatch(run_id, workflow)])
            return StepOutcome.SKIPPED
        return self.run_claimed(step, workflow, rpc, owner)

    def run_claimed(self, step: StepRun, workflow: str, rpc: str, owner: str) -> StepOutcome:
        """Run a step `owner` holds and record its outcome once."""
        run_id, step_name = step.run_id, step.name

        def renew() -> bool:
            return bool(
                self.store.renew_step_lease(run_id, step_name, owner, self.clock() + self.lease)
            )

        policy = step.policy or StepPolicy()
        what = f"the lease on step {step_name!r} of run {run_id}"
        # The lease is kept until the outcome is written: a store that is reconnecting may
        # take seconds to accept it, and the step must not be handed to another worker then.
        with self.keeper.hold(renew, what) as held:
            result, error = self._call(step, workflow, rpc, policy)
            held.finishing()
            if error is not None and self._retryable(step, error, policy):
                # Only the attempt's owner may retry; an attempt whose lease lapsed (another
                # worker took the step over) must not end the step as failed either.
                retried = self._retry(step, workflow, owner, error, policy)
                return StepOutcome.RETRYING if retried else StepOutcome.LOST
            recorded = self._record(step, workflow, owner, result, error)
        if not recorded:
            return StepOutcome.LOST
        return StepOutcome.FAILED if error else StepOutcome.SUCCEEDED

    def _record(
        self, step: StepRun, workflow: str, owner: str, result: Any, error: ErrorInfo | None
    ) -> bool:
        """Write the outcome and request a pass: run here next (eager execution, claimed in
        the same transaction) or sent."""
        now = self.clock()
        next_pass = PassDispatch(step.run_id, workflow)
        if self.eager is not None and self.eager.takes(next_pass):
            recorded, claim = self.store.finish_step_and_claim(
                step.run_id, step.name, now, result, error, owner, now + self.run_lease
            )
            if isinstance(claim, PassClaim):
                self.eager.keep(
                    ClaimedPass(claim, workflow, owner, _as_recorded(step, now, result, error))
                )
            elif not recorded:
                publish(self.dispatcher, [next_pass])
            # Refused for BUSY: the pass holding the run sees the request when it ends.
            return recorded
        recorded = self.store.finish_step(step.run_id, step.name, now, result, error)
        publish(self.dispatcher, [next_pass])
        return recorded

    def _call(
        self, step: StepRun, workflow: str, rpc: str, policy: StepPolicy
    ) -> tuple[Any, ErrorInfo | None]:
        """Run the step's RPC once: (JSON result, None) or (None, the error)."""
        name = step.name
        with _running(StepInfo(step.run_id, workflow, name, step.attempts)):
            started = time.monotonic()
            try:
                if step.target != rpc:
                    raise StaleBuildError(
                        f"step {name!r} was scheduled for RPC {step.target!r} but this "
                        f"worker's task calls {rpc!r}"
                    )
                value = self.registry.rpc(rpc).invoke(step.input)
                result = to_jsonable(value, f"result of step {name!r}")
                # Where the transport cannot interrupt an attempt, a late result still counts
                # as a timeout, so the retry policy sees the same thing everywhere.
                if policy.timeout is not None and time.monotonic() - started > policy.timeout:
                    raise StepTimeoutError(f"step {name!r} took longer than {policy.timeout}s")
                return result, None
            except Exception as exc:
                if type(exc).__name__ == "SoftTimeLimitExceeded":  # Celery's interruption
                    exc = StepTimeoutError(f"step {name!r} took longer than {policy.timeout}s")
                log.warning(
                    "step %s of run %s (%s) attempt %d failed: %r",
                    name, step.run_id, workflow, step.attempts, exc,
                    extra={"run_id": step.run_id, "workflow": workflow, "step": name},
                )  # fmt: skip
                return None, ErrorInfo.from_exception(exc, name)

    @staticmethod
    def _retryable(step: StepRun, error: ErrorInfo, policy: StepPolicy) -> bool:
        return policy.retry is not None and policy.retry.allows(step.attempts, error.names)

    def _retry(
        self, step: StepRun, workflow: str, owner: str, error: ErrorInfo, policy: StepPolicy
    ) -> bool:
        """Put a failed attempt back for later. The wait holds no worker slot: a short one is
        a countdown message, a long one is left to the sweeper."""
        assert policy.retry is not None
        now = self.clock()
        retry_at = now + policy.retry.delay(step.attempts)
        countdown = retry_at - now <= self.max_countdown
        retried = self.store.retry_step(
            step.run_id, step.name, owner, now, error, retry_at, sent=countdown
        )
        if retried and countdown:
            publish(self.dispatcher, [StepDispatch.of(step, workflow, eta=retry_at)])
        return retried


def _as_recorded(step: StepRun, now: datetime, result: Any, error: ErrorInfo | None) -> StepRun:
    """The step as `finish_step` writes it (orchestrator.history uses it)."""
    return step.model_copy(
        update={
            "status": StepStatus.FAILED if error else StepStatus.SUCCEEDED,
            "result": None if error else result,
            "error": error,
            "errors": [*step.errors, error] if error else step.errors,
            "completed_at": now,
        }
    )
