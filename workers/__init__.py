"""Celery adapter for the orchestrator: `celery -A workers worker` consumes every generated
queue (`-Q` picks some)."""

from orchestrator.config import Settings

from .app import app
from .routing import configure_queues

try:
    from . import generated
except ModuleNotFoundError as exc:
    if exc.name != "workers.generated":
        raise
    raise ImportError(
        "workers.generated is missing: run `python -m codegen prebuild` first"
    ) from None

from . import sweeper as _sweeper  # noqa: F401  (starts the recovery sweeper in workers)

queues = configure_queues(app, generated.ROUTES, Settings.from_env().queue_grouping)

__all__ = [
    # The Celery app (`celery -A workers worker`)
    "app",
    # The queues a worker started without -Q consumes
    "queues",
]
