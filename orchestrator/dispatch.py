"""What the engine asks its transport to send. The engine never imports a transport: the
Celery adapter lives in `workers/`, an in-process one in `orchestrator.testing`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from .models import StepRun


@dataclass(frozen=True)
class StepDispatch:
    """Run a remote step: publish `task(run_id, step)`."""

    run_id: str
    step: str
    task: str
    workflow: str  # queue grouping may put every task of a workflow on one queue
    eta: datetime | None = None  # a retry's delay
    timeout: float | None = None  # seconds per attempt (a soft time limit where supported)

    @classmethod
    def of(cls, step: StepRun, workflow: str, eta: datetime | None = None) -> StepDispatch:
        assert step.task is not None, f"step {step.name!r} is not remote"
        timeout = step.policy.timeout if step.policy else None
        return cls(step.run_id, step.name, step.task, workflow, eta=eta, timeout=timeout)


@dataclass(frozen=True)
class PassDispatch:
    """Run an orchestrator pass of the run, at `eta` if given (a short timer)."""

    run_id: str
    workflow: str
    eta: datetime | None = None


Dispatch = StepDispatch | PassDispatch


class Dispatcher(Protocol):
    def dispatch(self, messages: Sequence[Dispatch]) -> None:
        """Publish each message; may raise if the broker is unreachable. Callers record
        intent in the store first, so a lost publish is re-driven by the sweeper."""


@runtime_checkable
class QueueDepths(Protocol):
    """A transport that can tell how many messages wait in its queues. The sweeper uses it
    to tell a message that is merely queued behind others from one that was lost."""

    def queue_of(self, message: Dispatch) -> str:
        """The queue `message` goes to."""

    def depths(self, queues: Collection[str]) -> Mapping[str, int]:
        """How many messages each queue holds now (ones held by workers not counted)."""
