"""Eager execution: work for a queue this process serves is done here instead of through the
broker, as Temporal's eager activities are.

A step that finishes requests a pass of its run, and a pass schedules the run's next step:
in a sequential workflow each message has exactly one successor. When the process that sent
it also serves its queue, the broker hop buys nothing. So while `EagerDispatcher.run` runs a
received message, one successor at a time stays in the process: the pass commits its next
step already claimed (one transaction instead of two), the step's outcome is recorded in the
same transaction that claims the next pass, and each is run right after, with the same
leases as a delivery through the broker.

Fairness: a received message may chain at most `max_steps` deliveries or `max_seconds` of
work, then what remains goes to the broker, behind other runs' messages. Only one successor
stays local, so the branches of a fan-out still spread over every worker. A timer's message
or a step with a timeout (which the transport enforces on a received task) always goes
through the broker.

Durability is unchanged: work is committed to the store before it is kept or sent (the
outbox), and a process that dies holding some leaves leases that lapse (or that its
supervisor releases) and requests the sweeper re-drives, as if the broker had lost it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .dispatch import Dispatch, Dispatcher, PassDispatch, StepDispatch
from .models import StepRun
from .store import PassClaim


@dataclass(frozen=True)
class ClaimedStep:
    """A step a pass committed already claimed by `owner`, to run here."""

    step: StepRun
    workflow: str
    owner: str


@dataclass(frozen=True)
class ClaimedPass:
    """A pass claimed by `owner` in the transaction that recorded a step (`recorded`, as
    written), to run here."""

    claim: PassClaim
    workflow: str
    owner: str
    recorded: StepRun


Work = Dispatch | ClaimedStep | ClaimedPass


@dataclass
class _Session:
    started: float
    pending: deque[Work] = field(default_factory=deque)
    delivered: int = 0


class EagerDispatcher:
    """A `Dispatcher` that, while `run` runs in this thread, keeps one successor of the work
    in the process; everything else goes to `inner`."""

    def __init__(
        self,
        inner: Dispatcher,
        serves: Callable[[Dispatch], bool],
        *,
        max_steps: int = 20,
        max_seconds: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.serves = serves
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.clock = clock
        self._local = threading.local()

    def _session(self) -> _Session | None:
        session: _Session | None = getattr(self._local, "session", None)
        return session

    def _spent(self, session: _Session) -> bool:
        return (
            session.delivered >= self.max_steps
            or self.clock() - session.started >= self.max_seconds
        )

    def takes(self, message: Dispatch) -> bool:
        """Whether `message`'s work may stay in this process: a session runs here, holds no
        successor yet, has budget left, and this process serves the message's queue."""
        session = self._session()
        if session is None or session.pending or self._spent(session):
            return False
        if message.eta is not None:
            return False
        if isinstance(message, StepDispatch) and message.timeout is not None:
            return False
        return self.serves(message)

    def keep(self, work: ClaimedStep | ClaimedPass) -> None:
        """Hold claimed work (allowed by `takes`) to run after the current delivery."""
        session = self._session()
        assert session is not None and not session.pending, "keep() without takes()"
        session.pending.append(work)

    def dispatch(self, messages: Sequence[Dispatch]) -> None:
        kept = next((m for m in messages if self.takes(m)), None)
        if kept is not None:
            session = self._session()
            assert session is not None
            session.pending.append(kept)
        rest = [m for m in messages if m is not kept]
        if rest:
            self.inner.dispatch(rest)

    def run(self, work: Callable[[], object], deliver: Callable[[Work], object]) -> int:
        """Do `work` (a received message), then what it and its successors kept here.
        Returns how many were run after it."""
        session = _Session(self.clock())
        self._local.session = session
        try:
            work()
            while session.pending:
                item = session.pending.popleft()
                session.delivered += 1
                deliver(item)
        finally:
            self._local.session = None
            # Only if a delivery raised: unclaimed messages go out; claimed work is left to
            # its lease, as a crash would leave it.
            unsent = [m for m in session.pending if isinstance(m, StepDispatch | PassDispatch)]
            if unsent:
                self.inner.dispatch(unsent)
        return session.delivered
