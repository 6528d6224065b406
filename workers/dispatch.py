"""Publishing the engine's messages as Celery tasks."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from celery import Celery

from orchestrator.config import Settings
from orchestrator.dispatch import Dispatch, PassDispatch
from orchestrator.manifest import orchestrator_task_name

from .routing import declare, queue_for


class CeleryDispatcher:
    """The engine's `Dispatcher` (and `QueueDepths`): sends by task name to the queue the
    grouping gives, so a process that only starts runs (a web app) never imports the generated
    tasks."""

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        if app is None:
            from workers.app import app as default_app

            app = default_app
        self.app = app
        self.settings = settings or Settings.from_env()

    def queue_of(self, message: Dispatch) -> str:
        return queue_for(message.workflow, self._task(message), self.settings)

    @staticmethod
    def _task(message: Dispatch) -> str:
        if isinstance(message, PassDispatch):
            return orchestrator_task_name(message.workflow)
        return message.task

    def dispatch(self, messages: Sequence[Dispatch]) -> None:
        with self.app.producer_or_acquire() as producer:
            for message in messages:
                kwargs: dict[str, Any] = {}
                limit = None
                if isinstance(message, PassDispatch):
                    args = [message.run_id]
                    if message.eta is not None:
                        kwargs["timer"] = True  # a wake-up, not a duplicate (Engine.run_pass)
                else:
                    args = [message.run_id, message.step]
                    # A soft limit raises inside the step (prefork pool), ending the attempt;
                    # no hard limit: killing the process would requeue the message forever.
                    limit = math.ceil(message.timeout) if message.timeout else None
                self.app.send_task(
                    self._task(message),
                    args=args,
                    kwargs=kwargs,
                    eta=message.eta,
                    # Celery takes a kombu Queue here (its stubs say only a name).
                    queue=declare(self.queue_of(message)),  # type: ignore[arg-type]
                    soft_time_limit=limit,
                    producer=producer,
                )

    def depths(self, queues: Collection[str]) -> Mapping[str, int]:
        """Messages ready in each queue (AMQP's passive declare; kombu gives the same for its
        Redis and file transports). Messages a worker holds are not counted."""
        found: dict[str, int] = {}
        with self.app.connection_for_write() as connection:
            channel: Any = connection.channel()
            try:
                for name in queues:
                    try:
                        declared = declare(name)(channel).queue_declare(passive=True)
                        found[name] = int(getattr(declared, "message_count", 0))
                    except Exception:  # never declared (RabbitMQ closes the channel): empty
                        found[name] = 0
                        channel.close()
                        channel = connection.channel()
            finally:
                channel.close()
        return found
