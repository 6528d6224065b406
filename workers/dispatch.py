"""Publishing the engine's messages as Celery tasks."""

from __future__ import annotations

import math
from collections.abc import Sequence

from celery import Celery

from orchestrator.config import Settings
from orchestrator.dispatch import Dispatch, PassDispatch
from orchestrator.manifest import orchestrator_task_name

from .routing import declare, queue_for


class CeleryDispatcher:
    """The engine's `Dispatcher`: sends by task name to the queue the grouping gives, so a
    process that only starts runs (a web app) never imports the generated tasks."""

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        if app is None:
            from workers.app import app as default_app

            app = default_app
        self.app = app
        self.settings = settings or Settings.from_env()

    def dispatch(self, messages: Sequence[Dispatch]) -> None:
        with self.app.producer_or_acquire() as producer:
            for message in messages:
                if isinstance(message, PassDispatch):
                    task, args = orchestrator_task_name(message.workflow), [message.run_id]
                    limit = None
                else:
                    task, args = message.task, [message.run_id, message.step]
                    # A soft limit raises inside the step (prefork pool), ending the attempt;
                    # no hard limit: killing the process would requeue the message forever.
                    limit = math.ceil(message.timeout) if message.timeout else None
                self.app.send_task(
                    task,
                    args=args,
                    eta=message.eta,
                    # Celery takes a kombu Queue here (its stubs say only a name).
                    queue=declare(queue_for(message.workflow, task, self.settings)),  # type: ignore[arg-type]
                    soft_time_limit=limit,
                    producer=producer,
                )
