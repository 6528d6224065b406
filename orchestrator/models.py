"""The public view of runs and steps (pydantic models, JSON-ready)."""

from __future__ import annotations

import traceback
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import ConfigurationError
from .retry import StepPolicy

# Column widths of the run store (orchestrator/store/tables.py): checked before anything is
# written, so a long value is a clear error and not a database one.
RUN_ID_MAX = 64
IDEMPOTENCY_KEY_MAX = 200


def check_identifier(value: str, what: str, longest: int) -> str:
    """`value` if it is a usable run id (or key): non-empty, printable, at most `longest`."""
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigurationError(f"invalid {what} {value!r}: a non-empty printable string")
    if len(value) > longest:
        raise ConfigurationError(
            f"invalid {what} {value[:20]!r}...: {len(value)} characters, at most {longest}"
        )
    return value


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"  # see Run.waiting_for for what it waits on
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepKind(StrEnum):
    REMOTE = "remote"
    INLINE = "inline"
    SLEEP = "sleep"
    EVENT = "event"  # ctx.wait_for_event
    CHILD = "child"  # ctx.start_child
    MARKER = "marker"  # ctx.patched: records which code path a run took


class StepStatus(StrEnum):
    SCHEDULED = "scheduled"  # recorded, its task published (or about to be: the row is the outbox)
    RUNNING = "running"  # claimed by a worker holding a lease
    SLEEPING = "sleeping"  # a durable timer not yet due (or an inline step's retry delay)
    WAITING = "waiting"  # for an external event or a child run
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.FAILED)


class ErrorInfo(BaseModel):
    """A recorded error: enough to re-raise it on replay and to show it in `runs show`."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    step: str | None = None
    traceback: str | None = None
    # The error's class and base class names: retry policies match on any of them.
    types: list[str] = []

    @classmethod
    def from_exception(cls, exc: BaseException, step: str | None = None) -> ErrorInfo:
        return cls(
            type=type(exc).__name__,
            message=str(exc),
            step=step,
            traceback="".join(traceback.format_exception(exc)),
            types=[c.__name__ for c in type(exc).__mro__ if c not in (object, BaseException)],
        )

    @property
    def names(self) -> frozenset[str]:
        """Its class name and base class names, for matching retry policies."""
        return frozenset({self.type, *self.types})


class StepRun(BaseModel):
    """One step of a run, as recorded in the store."""

    run_id: str
    name: str
    kind: StepKind
    status: StepStatus
    seq: int  # position in the workflow's order of steps; replay checks it
    target: str | None = None  # the RPC name of a remote step; the task is per call site
    task: str | None = None  # the generated Celery task of a remote step's call site
    input: Any = None
    result: Any = None
    error: ErrorInfo | None = None
    attempts: int = 0
    errors: list[ErrorInfo] = []  # each failed attempt's error, oldest first
    policy: StepPolicy | None = None  # retry, timeout, on_error, as given at the call site
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    wake_at: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()


class Run(BaseModel):
    """One execution of a workflow."""

    id: str
    workflow: str
    status: RunStatus
    waiting_for: str | None = None  # "step:NAME", "timer:NAME" (or "event:NAME") while paused
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    version: str | None = None  # the manifest's hash of the workflow's steps when the run began
    parent_run_id: str | None = None  # set on child runs
    parent_step: str | None = None
    parent_workflow: str | None = None
    cancel_requested: str | None = None  # the reason, once cancel_run() was called
    idempotency_key: str | None = None  # as given to start(); the run id is derived from it
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime
    steps: list[StepRun] = []

    def step(self, name: str) -> StepRun:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


class Event(BaseModel):
    """An external event sent to a run, kept until a `wait_for_event` consumes it."""

    id: int
    run_id: str
    name: str
    payload: Any = None
    created_at: datetime


class RunPatch(BaseModel):
    """The run-level fields a pass writes when it ends."""

    status: RunStatus
    waiting_for: str | None = None
    output: Any = None
    error: ErrorInfo | None = None
    completed_at: datetime | None = None
