"""The engine objects a worker process uses, built once per process.

Built lazily because Celery's prefork pool forks after import: a store (and its connection
pool) or a heartbeat thread made before the fork must not be shared with the children.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.backoff import backoff_delay
from orchestrator.config import Settings
from orchestrator.dispatch import Dispatcher
from orchestrator.eager import EagerDispatcher
from orchestrator.engine import Engine
from orchestrator.errors import WorkflowError
from orchestrator.handler import Handler
from orchestrator.leases import HeartbeatKeeper
from orchestrator.manifest import installed
from orchestrator.steps import StepExecutor
from orchestrator.store import RunStore
from orchestrator.sweeper import Sweeper

from .dispatch import CeleryDispatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: RunStore
    engine: Engine
    executor: StepExecutor
    sweeper: Sweeper
    eager: EagerDispatcher | None = None

    @property
    def handler(self) -> Handler:
        return Handler(self.engine, self.executor, self.eager)


_runtime: tuple[int, Runtime] | None = None
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The pool forks replacement children while the main process's sweeper thread may hold
    # `_lock` or the store's connections: start the child with neither.
    global _lock, _runtime
    _lock = threading.Lock()
    if _runtime is not None:
        _runtime[1].store.detach_after_fork()
    _runtime = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime[0] != os.getpid():
            _runtime = (os.getpid(), _build(Settings.from_env()))
        return _runtime[1]


def _build(settings: Settings) -> Runtime:
    store = RunStore.from_settings(settings)
    broker = CeleryDispatcher(settings)
    dispatcher: Dispatcher = broker
    eager = None
    if settings.eager:
        # This worker's queues: all of the package's, or those picked with -Q.
        served = frozenset(broker.app.amqp.queues.consume_from)
        eager = EagerDispatcher(
            broker,
            lambda message: broker.queue_of(message) in served,
            max_steps=settings.eager_steps,
            max_seconds=settings.eager_time.total_seconds(),
        )
        dispatcher = eager
    # Renew at a third of the lease: two renewals can fail before another worker may take over.
    keeper = HeartbeatKeeper(
        interval=min(settings.step_lease, settings.run_lease).total_seconds() / 3
    )
    return Runtime(
        settings=settings,
        store=store,
        engine=Engine(
            store,
            dispatcher,
            run_lease=settings.run_lease,
            max_countdown=settings.max_countdown,
            keeper=keeper,
            eager=eager,
            step_lease=settings.step_lease,
        ),
        executor=StepExecutor(
            store,
            dispatcher,
            lease=settings.step_lease,
            max_countdown=settings.max_countdown,
            keeper=keeper,
            eager=eager,
            run_lease=settings.run_lease,
        ),
        sweeper=Sweeper(
            store,
            broker,
            redrive_after=settings.redrive_after,
            # The workflows this worker loaded (workers.serving): only their runs.
            workflows=installed().workflows,
        ),
        eager=eager,
    )


def sweep_forever(
    stop: threading.Event,
    build: Callable[[], Runtime] = runtime,
    interval: float | None = None,
    first_retry: float = 1.0,
) -> None:
    """The sweeper loop a worker runs in a thread of its main process. It survives anything:
    a store that cannot be reached when the worker starts (building the runtime connects) or
    later, a broker that is down; it logs, backs off (doubling, capped at a minute) and goes
    on, because a worker whose sweeper died would never re-drive lost work again."""
    failures = 0
    delay = interval if interval is not None else _configured_interval()
    while not stop.wait(delay):
        try:
            current = build()
            current.sweeper.sweep_once()
        except Exception as exc:
            failures += 1
            delay = backoff_delay(failures, initial=first_retry, cap=60.0)
            log.warning("sweep failed (%s: %s); next try in %.0fs", type(exc).__name__, exc, delay)
            log.debug("sweep failure", exc_info=True)
        else:
            failures = 0
            delay = interval or current.settings.sweep_interval.total_seconds()


def _configured_interval() -> float:
    try:
        return Settings.from_env().sweep_interval.total_seconds()
    except WorkflowError:
        return 5.0  # building the runtime reports the bad setting, in the loop
