"""Recovery: re-drive work whose message or worker was lost. Every action is a compare-and-set
in the store, so sweepers in several workers at once do not double the work."""

from __future__ import annotations

import logging
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
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        # How long a published message may sit unanswered before we assume it was lost; a
        # duplicate costs one no-op task, so this trades latency of recovery for queue noise.
        self.redrive_after = redrive_after
        # Short timers are normally woken by their countdown message; give it a moment first.
        self.timer_grace = timer_grace

    def sweep_once(self) -> SweepReport:
        now = self.clock()
        lapsed = self.store.reclaim_lapsed_steps(now)
        stale = self.store.stale_scheduled_steps(now, now - self.redrive_after)
        timers = self.store.wake_due_timers(now, now - self.timer_grace)
        stalled = self.store.runs_needing_pass(now, now - self.redrive_after)
        messages: list[Dispatch] = [StepDispatch.of(s) for s in (*lapsed, *stale) if s.task]
        messages += [PassDispatch(r.run_id, r.workflow) for r in (*timers, *stalled)]
        publish(self.dispatcher, messages)
        report = SweepReport(len(lapsed), len(stale), len(timers), len(stalled))
        if report.total:
            log.info("sweeper re-drove %s", report)
        return report
