"""Queues: which queue a task goes to, and the queues a worker consumes.

A queue name is a pure function of the workflow, the task and the grouping, so any process
can publish to the right queue without a routing table, and never to a queue that no worker
of that workflow consumes. Every remote step call site keeps its own task, but queues can be
grouped: a Redis worker's every fetch watches 4 keys per queue it consumes, so 50 step queues
cost far more per fetch than one queue per workflow (see bench/).
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from orchestrator.config import Settings
from orchestrator.manifest import Manifest


def queue_for(workflow: str, task: str, settings: Settings) -> str:
    """`step` grouping: each task's own queue, named after it. `workflow`: one per workflow.
    `shared`: one per workflows package, so that services sharing a broker stay apart."""
    if settings.queue_grouping == "workflow":
        return f"wf.{workflow}"
    if settings.queue_grouping == "shared":
        return f"wf@{settings.package}"
    return task


# One direct exchange for every workflow queue, each bound under its own name. (Not an
# exchange per queue, as Celery makes for a queue it was not told about: the embedded broker
# refuses exchange names with `{}` in them, as in `wf.shop.ship-{i}`.)
EXCHANGE = Exchange("wf", type="direct")


def declare(name: str) -> Queue:
    """The queue's declaration: publishers pass this very object with each message and
    workers consume it, so both bind it the same way on every broker."""
    return Queue(name, EXCHANGE, routing_key=name)


def manifest_queues(manifest: Manifest, settings: Settings) -> list[str]:
    """Every queue the manifest's tasks go to."""
    names = set()
    for wf in manifest.workflows.values():
        names.add(queue_for(wf.name, wf.orchestrator_task, settings))
        names.update(queue_for(wf.name, s.task, settings) for s in wf.steps if s.task)
    return sorted(names)


def configure_queues(app: Celery, manifest: Manifest, settings: Settings) -> list[str]:
    """Declare every queue of the manifest's workflows, so that a worker started without -Q
    consumes them all (and nothing else). Returns the queue names."""
    names = manifest_queues(manifest, settings)
    app.conf.task_queues = [declare(name) for name in names]
    return names
