"""Starting and inspecting runs: `WorkflowClient`, and module-level shortcuts that use a
default client built from the environment."""

from __future__ import annotations

import importlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from .clock import Clock, utcnow
from .config import Settings
from .definitions import REGISTRY, Registry, WorkflowDefinition
from .dispatch import Dispatcher, PassDispatch
from .engine import publish
from .errors import ConfigurationError, RunNotFoundError, RunTimeoutError
from .models import Run, RunStatus
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
    ) -> str:
        """Validate `input`, store a new run and enqueue its first pass; return the run id.

        Invalid input raises pydantic's `ValidationError` and stores nothing.
        """
        name = workflow if isinstance(workflow, str) else workflow.name
        definition = self.registry.workflow(name)
        data = definition.dump_input(definition.validate_input(input))
        version = definition.manifest().version  # a stale build fails here, before storing
        now = self.clock()
        run = Run(
            id=run_id or uuid.uuid4().hex,
            workflow=name,
            status=RunStatus.PENDING,
            input=data,
            version=version,
            created_at=now,
            updated_at=now,
        )
        dispatcher = self.dispatcher
        self.store.create_run(run)
        # If this publish is lost, the run is still stored with a pass requested: the sweeper
        # starts it.
        publish(dispatcher, [PassDispatch(run.id, name)])
        return run.id

    def get_run(self, run_id: str) -> Run:
        run = self.store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    def list_runs(
        self,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 100,
    ) -> list[Run]:
        return self.store.list_runs(
            workflow, RunStatus(status) if status is not None else None, limit
        )

    def wait_for_run(self, run_id: str, timeout: float = 60.0, poll_interval: float = 0.05) -> Run:
        """Block until the run is completed, failed or cancelled; `RunTimeoutError` after
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.status in TERMINAL:
                return run
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
        store = RunStore.from_url(settings.database_url)

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


def start(workflow: str, input: Any = None, *, run_id: str | None = None) -> str:
    return default_client().start(workflow, input, run_id=run_id)
