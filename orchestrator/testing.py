"""An in-process mode: run workflows synchronously, with a store in memory (SQLite) and a
clock you move by hand. For unit tests of workflows, and of this package."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

from .client import WorkflowClient
from .clock import FakeClock
from .definitions import REGISTRY, Registry, WorkflowDefinition
from .dispatch import Dispatch, Dispatcher, PassDispatch, StepDispatch
from .eager import EagerDispatcher
from .engine import Engine
from .handler import Handler
from .manifest import installed
from .models import Run
from .steps import StepExecutor
from .store import RunStore
from .sweeper import Sweeper


class LocalDispatcher:
    """Keeps published messages in a list instead of sending them anywhere: one queue for
    all, so its depth is every message waiting without a due time (as a broker's queue holds
    no countdown messages: workers fetch those at once)."""

    def __init__(self) -> None:
        self.queue: deque[Dispatch] = deque()
        self.sent: list[Dispatch] = []

    def dispatch(self, messages: Sequence[Dispatch]) -> None:
        self.queue.extend(messages)
        self.sent.extend(messages)

    def queue_of(self, message: Dispatch) -> str:
        return "local"

    def depths(self, queues: Collection[str]) -> Mapping[str, int]:
        waiting = sum(1 for m in self.queue if m.eta is None)
        return {name: waiting for name in queues}


class InProcessRunner:
    def __init__(
        self,
        store: RunStore | None = None,
        *,
        clock: FakeClock | None = None,
        registry: Registry = REGISTRY,
        eager: bool = False,
    ) -> None:
        """`eager`: deliver each message's successor in the same drain step, as a worker
        serving every queue does (orchestrator.eager)."""
        self.clock = clock or FakeClock()
        self.store = store or RunStore.from_url("memory://")
        self.dispatcher = LocalDispatcher()
        self.eager = EagerDispatcher(self.dispatcher, lambda _: True) if eager else None
        sender: Dispatcher = self.eager or self.dispatcher
        self.engine = Engine(
            self.store, sender, registry=registry, clock=self.clock, eager=self.eager
        )
        self.executor = StepExecutor(
            self.store, sender, registry=registry, clock=self.clock, eager=self.eager
        )
        self.handler = Handler(self.engine, self.executor, self.eager)
        self.sweeper = Sweeper(self.store, self.dispatcher, clock=self.clock)
        self.client = WorkflowClient(
            self.store, self.dispatcher, registry=registry, clock=self.clock
        )

    def start(self, workflow: str | WorkflowDefinition[Any, Any], input: Any = None) -> str:
        return self.client.start(workflow, input)

    def drain(self, limit: int = 10_000) -> int:
        """Deliver every message that is due now (and those they cause); return how many."""
        handled = 0
        deferred: list[Dispatch] = []
        while self.dispatcher.queue and handled < limit:
            message = self.dispatcher.queue.popleft()
            if message.eta is not None and message.eta > self.clock():
                deferred.append(message)
                continue
            if isinstance(message, PassDispatch):
                timer = message.eta is not None
                self.handler.receive_pass(message.run_id, message.workflow, owner=None, timer=timer)
            else:
                self._run_step(message)
            handled += 1
        self.dispatcher.queue.extend(deferred)
        return handled

    def _run_step(self, message: StepDispatch) -> None:
        rpc = installed().rpc_of(message.task)
        self.handler.receive_step(
            message.run_id, message.step, workflow=message.workflow, rpc=rpc, owner=None
        )

    def advance(self, seconds: float) -> int:
        """Move the clock and deliver what became due."""
        self.clock.advance(seconds)
        return self.drain()

    def run(self, workflow: str | WorkflowDefinition[Any, Any], input: Any = None) -> Run:
        """Start a run and deliver messages until nothing is due; return the run."""
        run_id = self.start(workflow, input)
        self.drain()
        return self.client.get_run(run_id)

    def run_to_end(
        self, workflow: str | WorkflowDefinition[Any, Any], input: Any = None, step: float = 1.0
    ) -> Run:
        """Like `run`, moving the clock `step` seconds at a time through timers (at most a day)."""
        return self.settle(self.start(workflow, input), step)

    def settle(self, run_id: str, step: float = 1.0) -> Run:
        """Deliver messages, moving the clock `step` seconds at a time through timers and
        retry delays (at most a day), until nothing is left; return the run."""
        self.drain()
        for _ in range(int(timedelta(days=1).total_seconds() / step)):
            if not self.dispatcher.queue:
                break
            self.advance(step)
        return self.client.get_run(run_id)
