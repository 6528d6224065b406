"""Runs the recovery sweeper inside every worker (no extra process to forget to start).

Concurrent sweepers are safe: each re-drive is a compare-and-set in the store.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from .runtime import sweep_forever

_stop = threading.Event()


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    _stop.clear()
    threading.Thread(target=sweep_forever, args=(_stop,), name="wf-sweeper", daemon=True).start()


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    _stop.set()


def main() -> None:
    """`python -m workers.sweeper`: sweep in a standalone process (e.g. with no workers up),
    for the workflows of `WORKFLOW_PACKAGE`."""
    import logging

    from orchestrator.config import Settings
    from orchestrator.package import load_workflows

    logging.basicConfig(level=logging.INFO)
    load_workflows(Settings.from_env().package)
    with contextlib.suppress(KeyboardInterrupt):
        sweep_forever(threading.Event())


if __name__ == "__main__":
    main()
