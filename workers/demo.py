"""`python -m workers.demo`: the examples end to end.

Embedded by default (SQLite run state and a server-less broker under ./.workflows/): runs the
prebuild, starts a Celery worker, runs the onboarding and order workflows (one order is
declined on purpose), prints each run with its steps, and stops the worker. With
`--external`, uses the workers and services already configured (docker-compose).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from orchestrator.config import Settings
from workers.process import WorkerProcess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.demo", description=__doc__)
    parser.add_argument("--external", action="store_true", help="use running workers")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    worker: AbstractContextManager[Any] = contextlib.nullcontext()
    if not args.external:
        subprocess.run([sys.executable, "-m", "codegen", "prebuild"], check=True)
        log = Settings.from_env().home / "demo-worker.log"
        print(f"starting a worker (log: {log})")
        worker = WorkerProcess(os.environ, log)

    # Imported after the prebuild: the package's handles are generated code.
    import workflows
    from orchestrator.display import show_run

    with worker:
        started = time.monotonic()
        order = {"order_id": "o-1001", "sku": "BOOK-42", "quantity": 2, "amount_cents": 4200}
        onboarding = workflows.onboarding.start(
            {"email": "ada@example.eu", "simulate_busy_provider": True}
        )
        run_ids = [
            onboarding,
            workflows.order.start({**order, "card": "4242424242424242"}),
            # The gateway times out once: the charge step is retried.
            workflows.order.start({**order, "order_id": "o-1002", "card": "4000000000000119"}),
            # Declined: stock is released and the run fails, naming the step.
            workflows.order.start({**order, "order_id": "o-1003", "card": "4000000000000002"}),
        ]
        # A large order waits for a manager's approval (an external event).
        big = workflows.order.start(
            {**order, "order_id": "o-1004", "amount_cents": 250_000, "card": "4242424242424242"}
        )
        client = workflows.onboarding.client
        _wait_until(lambda: client.get_run(big).waiting_for == "event:approval", args.timeout)
        print(f"order o-1004 waits for approval; sending it (run {big})")
        client.send_event(big, "approval", {"approved": True, "by": "demo manager"})
        runs = [client.wait_for_run(run_id, timeout=args.timeout) for run_id in [*run_ids, big]]
        elapsed = time.monotonic() - started
    for run in runs:
        print()
        show_run(run, sys.stdout)
    statuses = [r.status.value for r in runs]
    print(
        f"\n{len(runs)} runs finished in {elapsed:.1f}s: {', '.join(statuses)} "
        "(order o-1003 is declined on purpose)"
    )
    return 0 if statuses == ["completed", "completed", "completed", "failed", "completed"] else 1


def _wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo run did not reach the expected state")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
