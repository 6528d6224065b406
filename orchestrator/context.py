"""`WorkflowContext`: what a workflow function calls to take durable steps.

Each orchestrator pass replays the workflow from the top. A step already finished returns its
recorded result (or re-raises its recorded failure); the first unfinished one is scheduled and
the pass ends by raising the pause signal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .definitions import RpcFunction, WorkflowDefinition
from .dispatch import PassDispatch, StepDispatch
from .durations import Duration, parse_duration
from .errors import (
    ConfigurationError,
    EventTimeout,
    PassAborted,
    StaleBuildError,
    StepFailedError,
    StepTimeoutError,
    WorkflowAsyncException,
    WorkflowCancelled,
    WorkflowError,
)
from .models import ErrorInfo, RunStatus, StepKind, StepRun, StepStatus
from .replay import PassState, Positions, check_name, outcome, policy_of
from .retry import StepPolicy
from .serialization import model_dump, to_jsonable

_PENDING = object()  # an inline step waiting out its retry delay
_OPTIONS = frozenset({"retry", "timeout", "on_error"})


@dataclass(frozen=True)
class StepCall:
    """A step described but not yet taken: made by `ctx.step(...)`, taken by `ctx.gather`."""

    name: str
    target: str | Callable[..., Any]
    data: Any
    policy: StepPolicy
    kind: StepKind
    rpc: str | None


class WorkflowContext:
    """Passed to every workflow function as its first argument."""

    def __init__(self, state: PassState) -> None:
        self._state = state
        self._positions = Positions(state)
        self.current_step: str | None = None
        self.paused: WorkflowAsyncException | None = None
        self.cancelled: WorkflowCancelled | None = None
        # Errors that must fail the run even if user code catches them.
        self.fatal: Exception | None = None
        # A store write that failed mid-pass: the pass must end without committing more.
        self.broken: Exception | None = None

    @property
    def run_id(self) -> str:
        return self._state.run.id

    @property
    def workflow(self) -> str:
        return self._state.run.workflow

    @property
    def cancel_requested(self) -> str | None:
        """The reason, once `cancel_run` was called for this run."""
        return self._state.cancelling

    # -- steps -----------------------------------------------------------------------------

    def do(
        self, step_name: str, target: str | Callable[..., Any], data: Any = None, **options: Any
    ) -> Any:
        """Run a durable step and return its result.

        `target` is an RPC name or an `@rpc` function (a remote step: its own Celery task), or
        any other callable (an inline step, run here once: called with `data` if given,
        else with no arguments). Options: `retry=RetryPolicy(...)`, `timeout=` (per attempt),
        `on_error="fail"|"continue"`. A failed step raises `StepFailedError`.
        """
        self._guard()
        kind = StepKind.REMOTE if isinstance(target, str | RpcFunction) else StepKind.INLINE
        on_error = options.get("on_error", "fail")
        plain = options.keys() <= _OPTIONS and on_error in ("fail", "continue")
        done = self._positions.replayed(step_name, kind) if plain else None
        if done is not None:  # replaying a finished step: its recorded outcome
            self.current_step = done.name
            return None if on_error == "continue" and done.error else outcome(done, None)
        return self._settle([self.step(step_name, target, data, **options)], fail_fast=True)[0]

    def step(
        self, step_name: str, target: str | Callable[..., Any], data: Any = None, **options: Any
    ) -> StepCall:
        """Describe a step for `gather`, without taking it."""
        check_name(step_name)
        if isinstance(target, str):
            kind, rpc = StepKind.REMOTE, target
        elif isinstance(target, RpcFunction):
            kind, rpc = StepKind.REMOTE, target.name
        elif callable(target):
            kind, rpc = StepKind.INLINE, None
        else:
            raise ConfigurationError(
                f"step {step_name!r}: target must be an RPC name, an @rpc function or a "
                f"callable, not {type(target).__name__}"
            )
        policy = policy_of(step_name, options, self._state.default_retry)
        return StepCall(step_name, target, data, policy, kind, rpc)

    def gather(self, *calls: StepCall, fail_fast: bool = False) -> list[Any]:
        """Take several steps at once: every unfinished remote one is dispatched in this pass;
        results come back in order once all have finished. A failure is raised after the
        group settles, or as soon as it is seen with `fail_fast=True`."""
        return self._settle(list(calls), fail_fast=fail_fast)

    def map(
        self,
        step_name: str,
        target: str | Callable[..., Any],
        items: Iterable[Any],
        *,
        max_concurrency: int | None = None,
        fail_fast: bool = False,
        **options: Any,
    ) -> list[Any]:
        """One step per item, named `step_name[0]`, `step_name[1]`..., at most
        `max_concurrency` in flight; results in item order."""
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigurationError(f"map {step_name!r}: max_concurrency must be at least 1")
        calls = [
            self.step(f"{step_name}[{i}]", target, item, **options) for i, item in enumerate(items)
        ]
        return self._settle(calls, fail_fast=fail_fast, max_concurrency=max_concurrency)

    def sleep(self, step_name: str, duration: Duration) -> None:
        """Pause durably for `duration` ("500ms", "5s", "3m", "2h", "1d", seconds, timedelta)."""
        self._guard()
        delta = parse_duration(duration)
        name, seq = self._take(step_name, StepKind.SLEEP)
        now = self._state.now()
        step = self._state.steps.get(name)
        if step is not None and step.status.finished:
            return
        self._check_cancel()
        if step is None:
            step = self._new(name, seq, StepKind.SLEEP, StepStatus.SLEEPING, wake_at=now + delta)
            self._state.record(step)
        assert step.wake_at is not None
        if step.wake_at <= now:
            self._state.record(self._finished(step, StepStatus.SUCCEEDED))
            return
        self._state.wake_at(step.wake_at)
        self._pause(f"timer:{name}")

    def wait_for_event(self, event_name: str, timeout: Duration | None = None) -> Any:
        """Pause until `send_event(run_id, event_name, payload)` and return the payload. An
        event sent before the wait is kept and delivered. `EventTimeout` after `timeout`."""
        self._guard()
        name, seq = self._take(check_name(event_name), StepKind.EVENT)
        step = self._state.steps.get(name)
        if step is not None and step.status.finished:
            return outcome(step, None)
        self._check_cancel()
        now = self._state.now()
        if step is None:
            wake = now + parse_duration(timeout) if timeout is not None else None
            step = self._new(name, seq, StepKind.EVENT, StepStatus.WAITING, wake_at=wake)
            step = step.model_copy(update={"target": event_name})
            self._state.record(step)
        event = self._state.take_event(event_name)
        if event is not None:
            self._state.consumed.append((event.id, name))
            done = self._finished(step, StepStatus.SUCCEEDED, result=event.payload)
            self._state.record(done.model_copy(update={"input": {"event_id": event.id}}))
            return event.payload
        if step.wake_at is not None and step.wake_at <= now:
            message = f"no {event_name!r} event arrived by {step.wake_at.isoformat()}"
            error = ErrorInfo(type="EventTimeout", message=message, step=name)
            self._state.record(self._finished(step, StepStatus.FAILED, error=error))
            raise EventTimeout(name, error.type, message)
        if step.wake_at is not None:
            self._state.wake_at(step.wake_at)
        self._pause(f"event:{event_name}")

    def start_child(
        self, step_name: str, workflow: str | WorkflowDefinition[Any, Any] | Any, input: Any = None
    ) -> Any:
        """Run another workflow as a child and return its output (its failure raises
        `StepFailedError`). Cancelling this run cancels the child."""
        self._guard()
        child_workflow = workflow if isinstance(workflow, str) else workflow.name
        name, seq = self._take(step_name, StepKind.CHILD)
        step = self._state.steps.get(name)
        if step is not None and step.status.finished:
            return outcome(step, None)
        self._check_cancel()
        if step is None:
            child, is_new = self._state.child_run(child_workflow, input, name)
            step = self._new(name, seq, StepKind.CHILD, StepStatus.WAITING)
            step = step.model_copy(update={"target": child_workflow, "input": {"run_id": child.id}})
            if child.status is RunStatus.COMPLETED:  # made before by this run, since resumed
                step = self._finished(step, StepStatus.SUCCEEDED, result=child.output)
                self._state.record(step)
                return step.result
            self._state.record(step)
            if is_new:
                self._state.children.append(child)
            elif child.status in (RunStatus.FAILED, RunStatus.CANCELLED):
                self._state.resume_child(child.id)
            self._state.dispatches.append(PassDispatch(child.id, child_workflow))
        self._pause(f"child:{name}")

    def patched(self, change_id: str) -> bool:
        """True for runs that reach this point with the new code; False for runs replaying
        history recorded before the change, so old runs keep their old path."""
        self._guard()
        name = f"patch:{check_name(change_id)}"
        seq = self._positions.next_seq
        if name in self._state.steps:
            self._take(name, StepKind.MARKER)
            return True
        if self._state.max_seq >= seq:
            return False
        self._take(name, StepKind.MARKER)
        marker = self._new(name, seq, StepKind.MARKER, StepStatus.SUCCEEDED)
        self._state.record(self._finished(marker, StepStatus.SUCCEEDED))
        return True

    # -- taking steps ----------------------------------------------------------------------

    def _settle(
        self, calls: Sequence[StepCall], *, fail_fast: bool, max_concurrency: int | None = None
    ) -> list[Any]:
        self._guard()
        taken = [(call, *self._take(call.name, call.kind)) for call in calls]
        results: list[Any] = [_PENDING] * len(taken)
        failure: StepFailedError | None = None
        in_flight: list[str] = []
        for i, (call, name, _) in enumerate(taken):
            step = self._state.steps.get(name)
            if step is not None and step.status.finished:
                try:
                    results[i] = outcome(step, call.policy)
                except StepFailedError as exc:
                    if fail_fast:
                        raise
                    failure, results[i] = failure or exc, None
            elif step is not None and call.kind is StepKind.REMOTE:
                in_flight.append(name)
        for i, (call, name, seq) in enumerate(taken):
            if results[i] is not _PENDING or name in in_flight:
                continue
            if call.kind is StepKind.INLINE:
                try:
                    results[i] = self._inline(call, name, seq)
                except StepFailedError as exc:
                    if fail_fast:
                        raise
                    failure, results[i] = failure or exc, None
                continue
            self._check_cancel()
            if max_concurrency is not None and len(in_flight) >= max_concurrency:
                continue  # started by a later pass, as earlier ones finish
            self._schedule(call, name, seq)
            in_flight.append(name)
        if any(r is _PENDING for r in results):
            self._check_cancel()
            waiting = [
                name for (_, name, _), r in zip(taken, results, strict=True) if r is _PENDING
            ]
            self._pause(f"step:{waiting[0]}" if len(waiting) == 1 else f"steps:{','.join(waiting)}")
        if failure is not None:
            raise failure
        return results

    def _schedule(self, call: StepCall, name: str, seq: int) -> None:
        site = self._state.manifest.site_for(name, StepKind.REMOTE.value)
        if site.rpc != call.rpc:
            self._fail_hard(
                StaleBuildError(
                    f"step {name!r} calls RPC {call.rpc!r} but the prebuild saw {site.rpc!r}"
                )
            )
        step = self._new(name, seq, StepKind.REMOTE, StepStatus.SCHEDULED).model_copy(
            update={
                "target": call.rpc,
                "task": site.task,
                "input": to_jsonable(model_dump(call.data), f"input of step {name!r}"),
                "policy": call.policy,
            }
        )
        self._state.record(step)
        self._state.dispatches.append(StepDispatch.of(step, self.workflow))

    def _inline(self, call: StepCall, name: str, seq: int) -> Any:
        """Run an inline step (again, if its retry delay is over) and commit the outcome before
        the workflow goes on, so it never runs again on replay."""
        now = self._state.now()
        step = self._state.steps.get(name)
        if step is not None and step.wake_at is not None and step.wake_at > now:
            self._state.wake_at(step.wake_at)
            return _PENDING
        fn = call.target
        assert callable(fn)
        attempts = (step.attempts if step else 0) + 1
        errors = list(step.errors) if step else []
        started = time.monotonic()
        result: Any = None
        error: ErrorInfo | None = None
        try:
            value = fn() if call.data is None else fn(call.data)
            result = to_jsonable(value, f"result of step {name!r}")
            limit = call.policy.timeout
            if limit is not None and time.monotonic() - started > limit:
                raise StepTimeoutError(f"step {name!r} took longer than {limit}s")
        except Exception as exc:
            error = ErrorInfo.from_exception(exc, name)
            errors.append(error)
        base = step or self._new(name, seq, StepKind.INLINE, StepStatus.SCHEDULED)
        base = base.model_copy(
            update={
                "attempts": attempts,
                "errors": errors,
                "policy": call.policy,
                "started_at": now,
            }
        )
        retry = call.policy.retry
        if (
            error is not None
            and retry is not None
            and retry.allows(attempts, frozenset(error.types))
        ):
            wake = self._state.now() + retry.delay(attempts)
            self._state.record(
                base.model_copy(update={"status": StepStatus.SLEEPING, "wake_at": wake})
            )
            self._flush()
            self._state.wake_at(wake)
            return _PENDING
        status = StepStatus.FAILED if error else StepStatus.SUCCEEDED
        done = self._finished(base, status, result=result, error=error)
        self._state.record(done)
        self._flush()
        return outcome(done, call.policy)

    # -- helpers ---------------------------------------------------------------------------

    def _take(self, step_name: str, kind: StepKind) -> tuple[str, int]:
        try:
            name, seq = self._positions.take(step_name, kind)
        except WorkflowError as exc:
            self._fail_hard(exc)
        self.current_step = name
        return name, seq

    def _new(
        self, name: str, seq: int, kind: StepKind, status: StepStatus, **fields: Any
    ) -> StepRun:
        now = self._state.now()
        # A remote step starts when a worker claims it; the others start waiting now.
        started = None if kind is StepKind.REMOTE else now
        return StepRun(
            run_id=self.run_id, name=name, kind=kind, status=status, seq=seq,
            created_at=now, started_at=started, **fields,
        )  # fmt: skip

    def _finished(self, step: StepRun, status: StepStatus, **fields: Any) -> StepRun:
        now = self._state.now()
        return step.model_copy(
            update={"status": status, "completed_at": now, "wake_at": step.wake_at, **fields}
        )

    def _flush(self) -> None:
        try:
            self._state.flush()
        except Exception as exc:
            self.broken = exc
            raise PassAborted(str(exc)) from exc

    def _guard(self) -> None:
        # Once paused (or broken), every later ctx call pauses too: user code that swallowed
        # the signal with a bare `except:` must not run on past an unfinished step.
        if self.broken is not None:
            raise PassAborted(str(self.broken))
        if self.fatal is not None:
            raise WorkflowAsyncException("fatal")
        if self.paused is not None:
            raise self.paused

    def _check_cancel(self) -> None:
        """At the first step that would start or wait, a run being cancelled stops."""
        reason = self._state.cancelling
        if reason is not None:
            self.cancelled = WorkflowCancelled(reason)
            raise self.cancelled

    def _fail_hard(self, exc: Exception) -> NoReturn:
        self.fatal = exc
        raise exc

    def _pause(self, waiting_for: str) -> NoReturn:
        self.paused = WorkflowAsyncException(waiting_for)
        raise self.paused
