"""Error types. One root (`WorkflowError`), a shallow hierarchy, and one control-flow signal.

The pause signal derives from `BaseException` on purpose: a user's `except Exception` around a
step must not swallow it, or the pass would run on past a step that has not finished.
"""

from __future__ import annotations

from typing import Any


class WorkflowError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(WorkflowError):
    """A setting or argument is malformed (a bad URL, duration, option...)."""


class DefinitionError(WorkflowError):
    """A `@workflow` or `@rpc` definition is malformed or registered twice."""


class StaleBuildError(WorkflowError):
    """The running code does not match what `python -m codegen prebuild` generated."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}; run `python -m codegen prebuild`")


class UnknownWorkflowError(WorkflowError):
    """No workflow is registered under that name."""


class UnknownRpcError(WorkflowError):
    """No `@rpc` function is registered under that name."""


class RunNotFoundError(WorkflowError):
    """No run has that id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunExistsError(WorkflowError):
    """A run with that id already exists."""


class IdempotencyConflictError(RunExistsError):
    """A start reused a run id or idempotency key with other input (or another workflow):
    the same key must always mean the same request, as in Temporal and Stripe."""


class StepNotFoundError(WorkflowError):
    """The run has no step of that name (fork's `from_step`)."""

    def __init__(self, run_id: str, step: str, known: list[str]) -> None:
        names = ", ".join(known) or "none"
        super().__init__(f"run {run_id} has no step {step!r} (its steps: {names})")
        self.run_id = run_id
        self.step = step


class StoreUnavailableError(WorkflowError):
    """The run store cannot be reached or opened (server down, database missing, a folder
    that does not exist)."""


class SchemaVersionError(WorkflowError):
    """The run store's schema is not the one this code was written for."""


class InvalidTransitionError(WorkflowError):
    """A run was asked to move between two statuses the state machine does not link."""

    def __init__(self, current: str, target: str, message: str | None = None) -> None:
        super().__init__(message or f"invalid run status transition {current!r} -> {target!r}")
        self.current = current
        self.target = target


class SerializationError(WorkflowError):
    """A value that must cross a process boundary is not JSON-serializable."""


class StepFailedError(WorkflowError):
    """A step ended in failure. Carries the original error's type name and message, so a
    workflow can `try/except` a failed step on every replay, not only the first."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.message = message


class EventTimeout(StepFailedError):
    """`wait_for_event` timed out before the event arrived."""


class StepTimeoutError(WorkflowError):
    """A step attempt ran longer than its `timeout=`; retry policies see it like any error."""


class RunFinishedError(WorkflowError):
    """The run has already finished (an event, cancel or resume cannot apply to it)."""


class NonDeterminismError(WorkflowError):
    """Replay reached a different step than the run's history recorded at that point."""

    def __init__(self, position: int, expected: str, found: str) -> None:
        super().__init__(
            f"non-deterministic replay at step #{position}: history has {expected}, "
            f"the workflow code now reaches {found}"
        )
        self.position = position
        self.expected = expected
        self.found = found


class RunTimeoutError(WorkflowError, TimeoutError):
    """`wait_for_run` gave up before the run finished."""


class LeaseLostError(WorkflowError):
    """Another worker took over the run or step this worker was processing."""


class WorkflowCancelled(BaseException):
    """Raised at the first unfinished step of a run being cancelled; `finally` blocks run and
    may still take inline steps. Not an `Exception`, so `except Exception` lets it through."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PassAborted(BaseException):
    """The store refused a write mid-pass (lease lost, connection error): the pass stops at
    once, commits nothing more, and is re-driven. A BaseException so that user code catching
    `Exception` around a step cannot take a path the history will not record."""


class WorkflowAsyncException(BaseException):
    """The pause signal: the pass stops here and resumes when what it waits for is done.

    Never raised to user code that awaits a result; raised *through* it to end the pass.
    """

    def __init__(self, waiting_for: str, **detail: Any) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for
        self.detail = detail
