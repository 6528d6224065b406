"""Running what arrives: a received message, and (eager execution) the work it keeps here.

One place for what a transport's task does on receipt, so the Celery tasks and the in-process
mode run messages the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from .dispatch import PassDispatch
from .eager import ClaimedPass, ClaimedStep, EagerDispatcher, Work
from .engine import Engine
from .manifest import installed
from .steps import StepExecutor


class Handler:
    def __init__(
        self, engine: Engine, executor: StepExecutor, eager: EagerDispatcher | None = None
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.eager = eager

    def receive_pass(self, run_id: str, workflow: str, *, owner: str | None, timer: bool) -> None:
        """A received pass message (`timer`: a timer's wake-up), then what it kept here."""
        self._then_kept(
            lambda: self.engine.run_pass(run_id, workflow, owner=owner, timer=timer), owner
        )

    def receive_step(
        self, run_id: str, step: str, *, workflow: str, rpc: str, owner: str | None
    ) -> None:
        """A received step message (`rpc`: what its task calls), then what it kept here."""
        self._then_kept(
            lambda: self.executor.execute(run_id, step, workflow=workflow, rpc=rpc, owner=owner),
            owner,
        )

    def _then_kept(self, first: Callable[[], object], owner: str | None) -> None:
        if self.eager is None:
            first()
        else:
            self.eager.run(first, lambda work: self._run(work, owner))

    def _run(self, work: Work, owner: str | None) -> None:
        if isinstance(work, ClaimedPass):
            self.engine.continue_pass(work.claim, work.owner, recorded=work.recorded)
        elif isinstance(work, ClaimedStep):
            rpc = installed().rpc_of(work.step.task or "")
            self.executor.run_claimed(work.step, work.workflow, rpc, work.owner)
        elif isinstance(work, PassDispatch):
            self.engine.run_pass(work.run_id, work.workflow, owner=owner, timer=False)
        else:
            rpc = installed().rpc_of(work.task)
            self.executor.execute(
                work.run_id, work.step, workflow=work.workflow, rpc=rpc, owner=owner
            )
