"""Queues for the generated tasks.

Every remote step call site keeps its own task, but queues can be grouped: a Redis worker's
every fetch watches 4 keys per queue it consumes, so 50 step queues cost far more per fetch
than one queue per workflow (see bench/).
"""

from __future__ import annotations

from collections.abc import Mapping

from celery import Celery
from kombu import Queue

from orchestrator.config import QueueGrouping
from orchestrator.manifest import Manifest


def queue_for(workflow: str, default_queue: str, grouping: QueueGrouping) -> str:
    if grouping == "workflow":
        return f"wf.{workflow}"
    if grouping == "shared":
        return "wf"
    return default_queue


def configure_queues(
    app: Celery, routes: Mapping[str, tuple[str, str]], grouping: QueueGrouping
) -> list[str]:
    """Route every generated task to its queue and declare them all, so a worker started
    without -Q consumes every queue. Returns the queue names."""
    task_routes = {
        task: {"queue": queue_for(workflow, queue, grouping)}
        for task, (workflow, queue) in routes.items()
    }
    names = sorted({r["queue"] for r in task_routes.values()})
    app.conf.task_routes = task_routes
    app.conf.task_queues = [Queue(name, routing_key=name) for name in names]
    return names


def routes_from_manifest(manifest: Manifest) -> dict[str, tuple[str, str]]:
    """The generated routing table, rebuilt from a manifest (for processes that publish
    without importing the generated task module)."""
    routes: dict[str, tuple[str, str]] = {}
    for wf in manifest.workflows.values():
        routes[wf.orchestrator_task] = (wf.name, wf.orchestrator_queue)
        for site in wf.steps:
            if site.task and site.queue:
                routes[site.task] = (wf.name, site.queue)
    return routes
