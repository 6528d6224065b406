"""What a worker serves: its workflows package, loaded when the worker starts.

Loaded on Celery's `import_modules` signal (sent by `celery worker` before it sets up its
queues), not when `workers` is imported, so that only worker processes import generated tasks.
`--workflow-package` on the command line overrides `WORKFLOW_PACKAGE`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

import click
from celery import Celery, signals

from orchestrator.config import Settings, check_package_name
from orchestrator.errors import WorkflowError
from orchestrator.manifest import Manifest
from orchestrator.package import load_worker_tasks

from .app import app
from .routing import configure_queues

log = logging.getLogger(__name__)

app.user_options["preload"].add(
    click.Option(
        ["--workflow-package"],
        default=None,
        help="The workflows package to serve, dotted (default: $WORKFLOW_PACKAGE or workflows).",
    )
)


@signals.user_preload_options.connect
def _package_option(options: dict[str, Any], **_: Any) -> None:
    if options.get("workflow_package"):
        try:
            package = check_package_name(options["workflow_package"], "--workflow-package")
        except WorkflowError as exc:
            _refuse_to_start(exc)
        # Through the environment, so that the pool's children and every Settings agree.
        os.environ["WORKFLOW_PACKAGE"] = package


def serve(celery: Celery, settings: Settings) -> Manifest:
    """Register the package's tasks on `celery` and declare their queues."""
    manifest = load_worker_tasks(settings.package)
    queues = configure_queues(celery, manifest, settings)
    log.info(
        "serving workflows package %s: %s (%d queues)",
        settings.package,
        ", ".join(sorted(manifest.workflows)) or "no workflows",
        len(queues),
    )
    return manifest


@signals.import_modules.connect
def _serve_on_start(sender: Celery | None = None, **_: Any) -> None:
    if sender is not app:
        return
    try:
        serve(app, Settings.from_env())
    except WorkflowError as exc:
        _refuse_to_start(exc)


def _refuse_to_start(exc: WorkflowError) -> NoReturn:
    # A worker that cannot serve its package must not start; one line says why (a traceback
    # through Celery's start-up would bury it, and Celery's signals swallow exceptions).
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(1) from None
