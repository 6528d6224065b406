"""Recovery: re-drive work whose message or worker was lost. Every action is a compare-and-set
in the store, so sweepers in several workers at once do not double the work."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from .clock import Clock, utcnow
from .dispatch import Dispatch, Dispatcher, PassDispatch, StepDispatch
from .engine import publish
from .store import RunStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    lapsed_steps: int
    stale_steps: int
    due_timers: int
    stalled_runs: int
    workflows: tuple[str, ...] = ()  # of the runs re-driven

    @property
    def total(self) -> int:
        return self.lapsed_steps + self.stale_steps + self.due_timers + self.stalled_runs


class Sweeper:
    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        *,
        clock: Clock = utcnow,
        redrive_after: timedelta = timedelta(seconds=30),
        timer_grace: timedelta = timedelta(seconds=1),
        workflows: Collection[str] | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        # How long a published message may sit unanswered before we assume it was lost; a
        # duplicate costs one no-op task, so this trades latency of recovery for queue noise.
        self.redrive_after = redrive_after
        # Short timers are normally woken by their countdown message; give it a moment first.
        self.timer_grace = timer_grace
        # The workflows this process serves (None: all). Another service's runs are its own
        # sweepers' business: their messages would go to queues no worker here consumes.
        self.workflows = None if workflows is None else frozenset(workflows)

    def sweep_once(self) -> SweepReport:
        now, mine = self.clock(), self.workflows
        lapsed = self.store.reclaim_lapsed_steps(now, workflows=mine)
        stale = self.store.stale_scheduled_steps(now, now - self.redrive_after, workflows=mine)
        timers = self.store.wake_due_timers(now, now - self.timer_grace, workflows=mine)
        stalled = self.store.runs_needing_pass(now, now - self.redrive_after, workflows=mine)
        messages: list[Dispatch] = [
            StepDispatch.of(s.step, s.workflow) for s in (*lapsed, *stale) if s.step.task
        ]
        messages += [PassDispatch(r.run_id, r.workflow) for r in (*timers, *stalled)]
        publish(self.dispatcher, messages)
        workflows = tuple(sorted({m.workflow for m in messages}))
        report = SweepReport(len(lapsed), len(stale), len(timers), len(stalled), workflows)
        if report.total:
            log.info("sweeper re-drove %s", report)
        return report
