"""Recovery: re-drive work whose message or worker was lost. Every action is a compare-and-set
in the store, so sweepers in several workers at once do not double the work.

Telling lost from queued: under a backlog, a message can wait in its queue far longer than
`redrive_after` without being lost, and re-sending every such message only deepens the
backlog. A queue is first in, first out, so a queue holding D messages holds the D newest
items that wait on it: an item older than those is not in the queue (lost with a broker that
restarted empty, or held by a worker that died). The sweeper asks the transport for queue
depths and re-drives only that surplus, oldest first, once overdue. A transport that cannot
tell depths counts as empty: every overdue item is re-driven, as with no backlog.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import Clock, utcnow
from .dispatch import Dispatch, Dispatcher, PassDispatch, QueueDepths, StepDispatch
from .engine import publish
from .store import RunStore
from .store.base import Backlog, PassNeeded, StepNeeded

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
        limit: int = 100,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        # How long a published message may sit unanswered before it may be lost; a duplicate
        # costs one refused claim, so this trades latency of recovery for queue noise.
        self.redrive_after = redrive_after
        # Short timers are normally woken by their countdown message; give it a moment first.
        self.timer_grace = timer_grace
        # The workflows this process serves (None: all). Another service's runs are its own
        # sweepers' business: their messages would go to queues no worker here consumes.
        self.workflows = None if workflows is None else frozenset(workflows)
        self.limit = limit  # items of each kind per sweep

    def sweep_once(self) -> SweepReport:
        now, mine = self.clock(), self.workflows
        due = now - self.timer_grace
        # Nothing carries these any more (a dead worker's claim, a timer or retry too long
        # for a countdown): always re-driven.
        lapsed = self.store.reclaim_lapsed_steps(now, self.limit, workflows=mine)
        retries = self.store.due_retries(now, due, self.limit, workflows=mine)
        timers = self.store.wake_due_timers(now, due, self.limit, workflows=mine)
        stalled, stale = self._redrive_lost(now)
        steps = [*lapsed, *retries, *stale]
        messages: list[Dispatch] = [StepDispatch.of(s.step, s.workflow) for s in steps]
        messages += [PassDispatch(r.run_id, r.workflow) for r in (*timers, *stalled)]
        publish(self.dispatcher, messages)
        workflows = tuple(sorted({m.workflow for m in messages}))
        report = SweepReport(
            len(lapsed), len(retries) + len(stale), len(timers), len(stalled), workflows
        )
        if report.total:
            log.info("sweeper re-drove %s", report)
        return report

    def _redrive_lost(self, now: datetime) -> tuple[list[PassNeeded], list[StepNeeded]]:
        """Overdue pass requests and steps that are not in their queues (see the module)."""
        overdue = now - self.redrive_after
        waiting = self.store.backlog(now, overdue, workflows=self.workflows)
        late = {self._queue_of(b) for b in waiting if b.overdue}
        if not late:
            return [], []
        depths = self._depths(late)
        # Read again after the depths: an item taken from a queue meanwhile would otherwise
        # count as missing from it.
        by_queue: dict[str, list[Backlog]] = {}
        for b in self.store.backlog(now, overdue, workflows=self.workflows):
            by_queue.setdefault(self._queue_of(b), []).append(b)
        passes: list[PassNeeded] = []
        steps: list[StepNeeded] = []
        for queue, items in sorted(by_queue.items()):
            surplus = sum(b.pending for b in items) - depths.get(queue, 0)
            budget = min(surplus, sum(b.overdue for b in items), self.limit)
            late_runs = [b.workflow for b in items if b.task is None and b.overdue]
            if budget > 0 and late_runs:
                found = self.store.runs_needing_pass(now, overdue, budget, workflows=late_runs)
                passes += found
                budget -= len(found)
            late_steps = [b.task for b in items if b.task is not None and b.overdue]
            if budget > 0 and late_steps:
                steps += self.store.stale_scheduled_steps(
                    now, overdue, budget, workflows=self.workflows, tasks=late_steps
                )
        return passes, steps

    def _queue_of(self, backlog: Backlog) -> str:
        if not isinstance(self.dispatcher, QueueDepths):
            return f"{backlog.workflow}/{backlog.task}"  # each its own: depths unknown
        if backlog.task is None:
            return self.dispatcher.queue_of(PassDispatch("", backlog.workflow))
        return self.dispatcher.queue_of(StepDispatch("", "", backlog.task, backlog.workflow))

    def _depths(self, queues: Collection[str]) -> Mapping[str, int]:
        if not isinstance(self.dispatcher, QueueDepths):
            return {}
        try:
            return self.dispatcher.depths(queues)
        except Exception as exc:  # the broker is down: re-drive as if the queues were empty
            log.warning("could not read queue depths (%s: %s)", type(exc).__name__, exc)
            return {}
