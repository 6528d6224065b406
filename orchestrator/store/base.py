"""The run store interface: the single source of truth for runs and steps.

Every method that changes state is atomic and conditional (compare-and-set), because the
broker may deliver a message twice and several workers may act on one run at once.
Timestamps are always passed in (`now`), never read from a database clock, so tests can
drive time with a fake clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ..config import Settings
from ..errors import ConfigurationError
from ..models import ErrorInfo, Event, Run, RunPatch, RunStatus, StepRun


@dataclass(frozen=True)
class PassClaim:
    """A run taken by an orchestrator pass, with all its steps (loaded in one query)."""

    run: Run
    requested: int  # the pass-request counter when claimed; the release compares against it
    # False: `run.steps` was not read (finish_step_and_claim); see orchestrator.history.
    history_loaded: bool = True


class ClaimRefused(StrEnum):
    BUSY = "busy"  # another pass holds a live lease; it will run again for us (see release)
    FINISHED = "finished"
    MISSING = "missing"
    UNSERVED = "unserved"  # not tried: this process has no definition of the run's workflow
    ANSWERED = "answered"  # a duplicate message: every request was answered already


@dataclass(frozen=True)
class PassNeeded:
    """A run with an unanswered pass request and nobody holding it (sweeper output)."""

    run_id: str
    workflow: str


@dataclass(frozen=True)
class Backlog:
    """How many items of one kind should have a message waiting in a queue (sweeper input):
    the pass requests of a workflow (`task` None) or the scheduled steps of one call site."""

    workflow: str
    task: str | None
    pending: int
    overdue: int  # of which waiting longer than the re-drive delay


@dataclass(frozen=True)
class StepNeeded:
    """A remote step whose message must be sent again (sweeper output)."""

    workflow: str
    step: StepRun


class RunStore(ABC):
    """Where runs and steps live. One small subclass per backend; one contract test suite."""

    # What opening the store found: the schema revision it uses, and (before, after) if it
    # migrated the schema on the way.
    schema_revision: str | None = None
    schema_upgrade: tuple[str | None, str] | None = None

    @staticmethod
    def from_url(url: str, *, create_folder: bool = False, upgrade: bool | None = None) -> RunStore:
        """`sqlite:///path.db`, `postgresql://...` (psycopg 3), or `memory://` (SQLite in
        memory, for tests and the in-process mode).

        A SQLite file's folder must exist unless `create_folder`: a mistyped path is an error,
        not a new empty store somewhere else. An older schema is migrated if `upgrade` (by
        default: SQLite yes, PostgreSQL no, see `schema`). `StoreUnavailableError` if the store
        cannot be reached, `SchemaVersionError` if its schema does not fit this code."""
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme == "memory":
            from .sqlite import SqliteStore

            return SqliteStore("sqlite://")
        if scheme == "sqlite":
            from .sqlite import SqliteStore

            return SqliteStore(url, create_folder=create_folder, upgrade=upgrade is not False)
        if scheme in ("postgresql", "postgres"):
            from .postgres import PostgresStore

            return PostgresStore(url, upgrade=upgrade is True)
        raise ConfigurationError(
            f"unsupported WORKFLOW_DATABASE_URL scheme {scheme!r} in {url!r}: "
            "use sqlite:///path or postgresql://..."
        )

    @staticmethod
    def from_settings(settings: Settings, *, upgrade: bool | None = None) -> RunStore:
        """The configured store; the embedded default's folder is made on first use."""
        return RunStore.from_url(
            settings.database_url, create_folder=settings.embedded_database, upgrade=upgrade
        )

    # -- runs, as the client sees them ------------------------------------------------------

    @abstractmethod
    def create_run(self, run: Run) -> None:
        """Insert a new run with one pass requested; `RunExistsError` if the id is taken."""

    @abstractmethod
    def get_run(self, run_id: str, *, steps: bool = True) -> Run | None:
        """The run with all its steps, in order (or with none: `steps=False`)."""

    @abstractmethod
    def list_runs(
        self,
        workflow: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Newest first, without steps."""

    @abstractmethod
    def purge_runs(
        self, finished_before: datetime, statuses: Collection[RunStatus], limit: int
    ) -> int:
        """Delete at most `limit` runs (with their steps and events) that finished before
        `finished_before` in one of `statuses`, oldest first, in one transaction; return how
        many. A run that is not finished is never touched, whatever `statuses` says."""

    # -- orchestrator passes ---------------------------------------------------------------

    @abstractmethod
    def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime, *, timer: bool = True
    ) -> PassClaim | ClaimRefused:
        """Take the run's pass lease if free or lapsed (and the run is not finished), mark it
        running, and load it with its steps. Unless the pass was sent by a `timer` (which
        requests nothing in advance), a run with every request answered is refused as
        `ANSWERED`: the message was a duplicate, and replaying would find nothing new."""

    @abstractmethod
    def commit_pass(
        self,
        run_id: str,
        owner: str,
        now: datetime,
        lease_until: datetime,
        steps: Sequence[StepRun] = (),
        patch: RunPatch | None = None,
        release: int | None = None,
        *,
        children: Sequence[Run] = (),
        consumed: Sequence[tuple[int, str]] = (),
        claimed: tuple[str, str, datetime] | None = None,
    ) -> bool:
        """Atomically: upsert `steps` (a finished step is never overwritten), create the
        `children` runs not created yet, mark `consumed` events (id, by step), apply `patch`
        (a finishing child run also finishes its parent's step and requests a parent pass),
        and renew the lease; if `release` (the request count the pass answered) is given,
        give the lease up and return whether every request was answered (False: another pass
        is needed). `claimed` (step name, owner, lease until): that step, written already
        running with its first attempt counted, is leased to `owner` (eager execution).
        `LeaseLostError` if `owner` no longer holds the run."""

    @abstractmethod
    def renew_run_lease(self, run_id: str, owner: str, lease_until: datetime) -> bool: ...

    @abstractmethod
    def request_pass(self, run_id: str, now: datetime) -> bool:
        """Record that the run needs a pass (False if missing or finished)."""

    # -- remote steps ----------------------------------------------------------------------

    @abstractmethod
    def claim_step(
        self, run_id: str, name: str, owner: str, now: datetime, lease_until: datetime
    ) -> StepRun | None:
        """Take a scheduled step (or one whose lease lapsed) and count an attempt. None if it
        is finished, held under a live lease, or its run is finished."""

    @abstractmethod
    def renew_step_lease(
        self, run_id: str, name: str, owner: str, lease_until: datetime
    ) -> bool: ...

    @abstractmethod
    def release_owner(self, owner: str, now: datetime) -> tuple[list[StepNeeded], list[PassNeeded]]:
        """Give up every lease `owner` holds (its process died): its steps go back to
        scheduled, the attempt still counted, and its pass leases are dropped, their requests
        unanswered. Returned so the caller sends them again at once: a step run eagerly had
        no message of its own."""

    @abstractmethod
    def retry_step(
        self,
        run_id: str,
        name: str,
        owner: str,
        now: datetime,
        error: ErrorInfo,
        retry_at: datetime,
        *,
        sent: bool = True,
    ) -> bool:
        """Record a failed attempt and put the step back to scheduled, not to be claimed before
        `retry_at`; `sent`: whether a (countdown) message will carry the retry, else the
        sweeper sends one when it falls due. Only the attempt's owner may; False otherwise."""

    @abstractmethod
    def finish_step(
        self,
        run_id: str,
        name: str,
        now: datetime,
        result: object = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        """Record a step's outcome (an error is also appended to its attempt errors), first
        write wins, and request a pass of its run in the same transaction. False if the step
        was already finished."""

    @abstractmethod
    def finish_step_and_claim(
        self,
        run_id: str,
        name: str,
        now: datetime,
        result: object,
        error: ErrorInfo | None,
        owner: str,
        lease_until: datetime,
    ) -> tuple[bool, PassClaim | ClaimRefused]:
        """`finish_step`, and in the same transaction `claim_run` of its run for `owner`
        (eager execution: the pass the outcome requests runs next, here), without its steps
        (`history_loaded` False: the caller may know them, else `load_steps`). The claim
        answers the request that recording made; refused, the request stays for whoever
        holds the run. (False, ...) if the step was already finished."""

    @abstractmethod
    def load_steps(self, run_id: str) -> list[StepRun]:
        """A run's steps, in order (what a claim loads)."""

    @abstractmethod
    def get_step(self, run_id: str, name: str) -> StepRun | None: ...

    # -- events and control ----------------------------------------------------------------

    @abstractmethod
    def add_event(self, run_id: str, name: str, payload: object, now: datetime) -> str:
        """Keep an event for the run and request a pass; return the run's workflow.
        `RunNotFoundError` / `RunFinishedError` otherwise."""

    @abstractmethod
    def pending_events(self, run_id: str) -> list[Event]:
        """The run's events not consumed yet, oldest first."""

    @abstractmethod
    def request_cancel(self, run_id: str, reason: str, now: datetime) -> list[PassNeeded]:
        """Flag the run and its unfinished descendants for cancellation and request a pass of
        each; returned so the caller dispatches them. `RunNotFoundError` /
        `RunFinishedError` if the run is missing or finished."""

    @abstractmethod
    def resume_run(self, run_id: str, now: datetime) -> Run:
        """Move a failed or cancelled run back to pending, forget its failed and unfinished
        steps (succeeded ones stay cached), and request a pass. `InvalidTransitionError` from
        any other status."""

    @abstractmethod
    def fork_run(self, run_id: str, new_id: str, from_step: str, now: datetime) -> Run:
        """A new pending run of the same workflow and input, starting with copies of the
        original's finished steps that come before `from_step`."""

    # -- recovery (the sweeper) ------------------------------------------------------------
    # Each takes `workflows`: only runs of those workflows (None: all), so that services
    # sharing one store each re-drive their own.

    @abstractmethod
    def reclaim_lapsed_steps(
        self, now: datetime, limit: int = 100, workflows: Collection[str] | None = None
    ) -> list[StepNeeded]:
        """Steps claimed by a worker whose lease lapsed go back to scheduled; returned so the
        caller re-publishes them. Only one concurrent caller gets a given step."""

    @abstractmethod
    def backlog(
        self, now: datetime, older_than: datetime, workflows: Collection[str] | None = None
    ) -> list[Backlog]:
        """Per workflow (passes) and per call site (steps): how many items should have a
        message in a queue, and how many of those have waited since before `older_than`."""

    @abstractmethod
    def stale_scheduled_steps(
        self,
        now: datetime,
        older_than: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
        tasks: Sequence[str] | None = None,
    ) -> list[StepNeeded]:
        """Scheduled steps whose message was sent (or fell due) before `older_than` and that
        nobody has claimed, oldest first, of the given call sites (`tasks`, None: all); their
        dispatch time is bumped to `now` and they are returned."""

    @abstractmethod
    def due_retries(
        self,
        now: datetime,
        due_before: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
    ) -> list[StepNeeded]:
        """Steps whose retry delay (too long for a countdown message) ended before
        `due_before`: no message carries them; they are marked sent and returned."""

    @abstractmethod
    def wake_due_timers(
        self,
        now: datetime,
        due_before: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
    ) -> list[PassNeeded]:
        """Request a pass for runs with a timer (a sleep, an inline retry delay, an event
        timeout) due before `due_before` and no request pending; returned to be dispatched."""

    @abstractmethod
    def runs_needing_pass(
        self,
        now: datetime,
        older_than: datetime,
        limit: int = 100,
        workflows: Collection[str] | None = None,
    ) -> list[PassNeeded]:
        """Runs with a pass requested before `older_than`, unanswered, and no live lease;
        their request time is bumped to `now` so concurrent sweepers don't both re-drive."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def detach_after_fork(self) -> None:  # noqa: B027 - optional hook
        """In a forked child: drop the parent's connections without closing them (closing
        would end the parent's sessions on the sockets both processes share)."""
