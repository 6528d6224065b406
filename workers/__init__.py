"""Celery adapter for the orchestrator: `celery -A workers worker` consumes every generated
queue (`-Q` picks some)."""

import importlib

from orchestrator.config import Settings

from .app import app
from .routing import configure_queues

_settings = Settings.from_env()
try:
    # The prebuild's output: one task per workflow and per remote step call site.
    _generated = importlib.import_module(_settings.tasks_module)
except ModuleNotFoundError as exc:
    if exc.name != _settings.tasks_module:
        raise
    raise ImportError(
        f"{_settings.tasks_module} is missing: run `python -m codegen prebuild` first"
    ) from None

from . import sweeper as _sweeper  # noqa: E402, F401  (starts the recovery sweeper in workers)

queues = configure_queues(app, _generated.ROUTES, _settings.queue_grouping)

__all__ = [
    # The Celery app (`celery -A workers worker`)
    "app",
    # The queues a worker started without -Q consumes
    "queues",
]
