"""Starting and inspecting runs: `WorkflowClient`, and module-level shortcuts that use a
default client built from the environment."""

from __future__ import annotations

import importlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

from .clock import Clock, utcnow
from .config import Settings
from .definitions import REGISTRY, Registry, WorkflowDefinition
from .dispatch import Dispatcher, PassDispatch
from .durations import Duration, parse_duration
from .engine import publish
from .errors import (
    ConfigurationError,
    IdempotencyConflictError,
    RunExistsError,
    RunNotFoundError,
    RunTimeoutError,
)
from .models import IDEMPOTENCY_KEY_MAX, RUN_ID_MAX, Run, RunStatus, check_identifier
from .serialization import model_dump, to_jsonable
from .states import TERMINAL
from .store import RunStore

log = logging.getLogger(__name__)


class WorkflowClient:
    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher | None = None,
        *,
        dispatcher_factory: Callable[[], Dispatcher] | None = None,
        registry: Registry = REGISTRY,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self._dispatcher = dispatcher
        # Inspecting runs needs no broker: the transport is loaded on the first start().
        self._dispatcher_factory = dispatcher_factory
        self.registry = registry
        self.clock = clock

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            if self._dispatcher_factory is None:
                raise ConfigurationError("this client has no dispatcher: it can inspect runs only")
            self._dispatcher = self._dispatcher_factory()
        return self._dispatcher

    def start(
        self,
        workflow: str | WorkflowDefinition[Any, Any],
        input: Any = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Validate `input`, store a new run and enqueue its first pass; return the run id.

        Invalid input raises pydantic's `ValidationError` and stores nothing. Starting again
        with the same `run_id` or `idempotency_key` and the same input returns the same run;
        with other input it is an `IdempotencyConflictError`.
        """
        name = workflow if isinstance(workflow, str) else workflow.name
        definition = self.registry.workflow(name)
        if run_id is not None:
            check_identifier(run_id, "run id", RUN_ID_MAX)
        if idempotency_key is not None:
            check_identifier(idempotency_key, "idempotency key", IDEMPOTENCY_KEY_MAX)
            run_id = run_id or uuid.uuid5(uuid.NAMESPACE_URL, f"wf:{name}/{idempotency_key}").hex
        # Input and build are checked before anything is stored.
        run = definition.new_run(
            input, run_id or uuid.uuid4().hex, self.clock(), idempotency_key=idempotency_key
        )
        dispatcher = self.dispatcher
        try:
            self.store.create_run(run)
        except RunExistsError:
            self._check_same_request(run)
            return run.id
        # If this publish is lost, the run is still stored with a pass requested: the sweeper
        # of a worker serving this workflow starts it.
        publish(dispatcher, [PassDispatch(run.id, name)], what=f"run {run.id} was stored")
        return run.id

    def _check_same_request(self, run: Run) -> None:
        """A start that found its run id taken is a repeat only if it asks for the same
        thing; the same key for another request is a caller's bug, reported, not hidden."""
        existing = self.get_run(run.id, steps=False)
        if (existing.workflow, existing.input) == (run.workflow, run.input):
            return
        what = (
            f"idempotency key {run.idempotency_key!r}"
            if run.idempotency_key is not None
            else f"run id {run.id!r}"
        )
        differs = "workflow" if existing.workflow != run.workflow else "input"
        raise IdempotencyConflictError(
            f"{what} was already used for run {run.id} of workflow {existing.workflow!r} "
            f"with other {differs}: the same key must always mean the same request"
        )

    def send_event(self, run_id: str, name: str, payload: Any = None) -> None:
        """Deliver an event to a run's `wait_for_event(name)`, now or when it gets there.
        `RunNotFoundError` / `RunFinishedError` if the run is missing or finished."""
        data = to_jsonable(model_dump(payload), f"payload of event {name!r}")
        workflow = self.store.add_event(run_id, name, data, self.clock())
        publish(self.dispatcher, [PassDispatch(run_id, workflow)])

    def cancel_run(self, run_id: str, reason: str | None = None) -> None:
        """Cancel a run and its child runs: nothing new is scheduled, queued steps become
        no-ops, and the workflow's `finally` blocks may still run inline cleanup."""
        flagged = self.store.request_cancel(run_id, reason or "cancelled", self.clock())
        publish(self.dispatcher, [PassDispatch(f.run_id, f.workflow) for f in flagged])

    def resume_run(self, run_id: str) -> Run:
        """Continue a failed or cancelled run; its succeeded steps stay cached."""
        run = self.store.resume_run(run_id, self.clock())
        publish(self.dispatcher, [PassDispatch(run.id, run.workflow)])
        return run

    def fork_run(self, run_id: str, from_step: str, *, new_run_id: str | None = None) -> Run:
        """A new run of the same workflow and input, reusing the original's results of the
        steps before `from_step`."""
        run = self.store.fork_run(run_id, new_run_id or uuid.uuid4().hex, from_step, self.clock())
        publish(self.dispatcher, [PassDispatch(run.id, run.workflow)])
        return run

    def get_run(self, run_id: str, *, steps: bool = True) -> Run:
        """The run, with its steps unless `steps=False` (one query instead of two)."""
        run = self.store.get_run(run_id, steps=steps)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    def list_runs(
        self,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 100,
    ) -> list[Run]:
        if limit < 1:
            raise ConfigurationError(f"limit must be at least 1, not {limit}")
        return self.store.list_runs(
            workflow, RunStatus(status) if status is not None else None, limit
        )

    def purge_runs(
        self,
        older_than: Duration,
        status: Collection[RunStatus | str] | RunStatus | str | None = None,
        *,
        batch_size: int = 500,
    ) -> int:
        """Delete runs that finished more than `older_than` ago ("30d", a timedelta...), with
        their steps and events, `batch_size` runs per transaction; return how many. `status`
        picks among completed, failed and cancelled (default: all three); a run that is not
        finished is never deleted."""
        age = parse_duration(older_than)
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {batch_size}")
        wanted = _finished_statuses(status)
        before = self.clock() - age
        total = 0
        while deleted := self.store.purge_runs(before, wanted, batch_size):
            total += deleted
        log.info("purged %d finished run(s) older than %s", total, age)
        return total

    def wait_for_run(self, run_id: str, timeout: float = 60.0, poll_interval: float = 0.05) -> Run:
        """Block until the run is completed, failed or cancelled; `RunTimeoutError` after
        `timeout` seconds. Polls the run alone; its steps are loaded once, at the end."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id, steps=False)
            if run.status in TERMINAL:
                return self.get_run(run_id)
            if time.monotonic() >= deadline:
                raise RunTimeoutError(
                    f"run {run_id} still {run.status.value} after {timeout}s"
                    + (f" (waiting for {run.waiting_for})" if run.waiting_for else "")
                )
            time.sleep(poll_interval)

    def run(
        self,
        workflow: str | WorkflowDefinition[Any, Any],
        input: Any = None,
        *,
        timeout: float = 60.0,
    ) -> Run:
        """Start a run and wait for it to finish."""
        return self.wait_for_run(self.start(workflow, input), timeout=timeout)


def _finished_statuses(
    status: Collection[RunStatus | str] | RunStatus | str | None,
) -> frozenset[RunStatus]:
    if status is None:
        return TERMINAL
    items = [status] if isinstance(status, str) else list(status)
    chosen = frozenset(RunStatus(s) for s in items)
    if not chosen <= TERMINAL:
        unfinished = ", ".join(sorted(s.value for s in chosen - TERMINAL))
        raise ConfigurationError(
            f"only finished runs can be purged (completed, failed, cancelled), not {unfinished}"
        )
    return chosen


def load_object(path: str) -> Any:
    """Import `package.module:attribute`."""
    module, _, attribute = path.partition(":")
    if not attribute:
        raise ConfigurationError(f"expected 'module:attribute', got {path!r}")
    return getattr(importlib.import_module(module), attribute)


_default: tuple[int, WorkflowClient] | None = None


def default_client() -> WorkflowClient:
    """The client configured from the environment, one per process (forks get their own)."""
    global _default
    if _default is None or _default[0] != os.getpid():
        settings = Settings.from_env()
        store = RunStore.from_settings(settings)

        def factory() -> Dispatcher:
            return load_object(settings.dispatcher)(settings)  # type: ignore[no-any-return]

        _default = (os.getpid(), WorkflowClient(store, dispatcher_factory=factory))
    return _default[1]


def _after_fork_in_child() -> None:
    # Forking servers (gunicorn, Celery's pool) must not reuse the parent's connections.
    global _default
    if _default is not None:
        _default[1].store.detach_after_fork()
    _default = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_default_client(client: WorkflowClient | None) -> None:
    """Replace the default client (tests, in-process runs); None rebuilds it from the env."""
    global _default
    _default = None if client is None else (os.getpid(), client)


def get_run(run_id: str) -> Run:
    return default_client().get_run(run_id)


def list_runs(
    workflow: str | None = None, status: RunStatus | str | None = None, limit: int = 100
) -> list[Run]:
    return default_client().list_runs(workflow, status, limit)


def wait_for_run(run_id: str, timeout: float = 60.0) -> Run:
    return default_client().wait_for_run(run_id, timeout)


def start(
    workflow: str,
    input: Any = None,
    *,
    run_id: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    return default_client().start(workflow, input, run_id=run_id, idempotency_key=idempotency_key)


def send_event(run_id: str, name: str, payload: Any = None) -> None:
    default_client().send_event(run_id, name, payload)


def cancel_run(run_id: str, reason: str | None = None) -> None:
    default_client().cancel_run(run_id, reason)


def resume_run(run_id: str) -> Run:
    return default_client().resume_run(run_id)


def fork_run(run_id: str, from_step: str) -> Run:
    return default_client().fork_run(run_id, from_step)


def purge_runs(
    older_than: Duration,
    status: Collection[RunStatus | str] | RunStatus | str | None = None,
    *,
    batch_size: int = 500,
) -> int:
    return default_client().purge_runs(older_than, status, batch_size=batch_size)
