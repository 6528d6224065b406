"""Celery adapter for the orchestrator.

`celery -A workers worker` serves the workflows package named by `WORKFLOW_PACKAGE` (default
`workflows`, found from the current directory, as `celery -A` finds its app): when the worker
starts, it imports the package's generated tasks and consumes their queues (`-Q` picks some).
Importing `workers` itself loads no generated code, so a process that only starts runs (a web
app), or `python -m workers.demo` before its prebuild, never needs it.
"""

from . import serving as _serving  # noqa: F401  (loads the package when a worker starts)
from . import sweeper as _sweeper  # noqa: F401  (starts the recovery sweeper in workers)
from .app import app

__all__ = [
    # The Celery app (`celery -A workers worker`)
    "app",
]
