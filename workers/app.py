"""The Celery app, configured for at-least-once delivery and JSON only."""

from __future__ import annotations

from typing import Any

from celery import Celery

from orchestrator.config import Settings

from . import fs_transport


def broker_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith(f"{fs_transport.SCHEME}://"):
        # A server-less transport polls: its default 1 s would add a second to every hop.
        return {
            **fs_transport.folder_options(settings.home / "broker"),
            "polling_interval": settings.broker_poll_interval,
        }
    return {}


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery(
        "workflows",
        broker=settings.broker_url,
        set_as_current=False,
        # Releases what a pool child held when it dies (workers/supervision.py).
        task_cls="workers.supervision:WorkflowTask",
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        # At-least-once: ack after the task ran, requeue if the worker process dies, and take
        # one message at a time so a crash strands at most one. Tasks are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # How long the pool waits for a dead child's result before declaring it lost (10 s by
        # default): there are no results here, and the lease it held is released then.
        worker_lost_wait=1.0,
        worker_prefetch_multiplier=1,
        # Results live in the run store, not in a Celery result backend.
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        task_default_queue="wf.default",
        worker_hijack_root_logger=False,
    )
    return app


app = create_app()
