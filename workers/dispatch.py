"""Publishing the engine's messages as Celery tasks."""

from __future__ import annotations

import math
from collections.abc import Sequence

from celery import Celery

from orchestrator.config import Settings
from orchestrator.dispatch import Dispatch, PassDispatch


def orchestrator_task(workflow: str) -> str:
    return f"wf.{workflow}.orchestrator"


class CeleryDispatcher:
    """The engine's `Dispatcher`, sending by task name (routing comes from the app's
    `task_routes`, so app code need not import the task functions)."""

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        if app is None:
            from workers import app as default_app

            app = default_app
        self.app = app

    def dispatch(self, messages: Sequence[Dispatch]) -> None:
        with self.app.producer_or_acquire() as producer:
            for message in messages:
                if isinstance(message, PassDispatch):
                    self.app.send_task(
                        orchestrator_task(message.workflow),
                        args=[message.run_id],
                        eta=message.eta,
                        producer=producer,
                    )
                else:
                    # A soft limit raises inside the step (prefork pool), ending the attempt;
                    # no hard limit: killing the process would requeue the message forever.
                    self.app.send_task(
                        message.task,
                        args=[message.run_id, message.step],
                        eta=message.eta,
                        soft_time_limit=math.ceil(message.timeout) if message.timeout else None,
                        producer=producer,
                    )
