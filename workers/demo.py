"""`python -m workers.demo`: the examples end to end.

Embedded by default (SQLite run state and a SQLite broker under ./.workflows/, no server):
runs the prebuild, starts a Celery worker, runs the onboarding and order workflows (one order
is declined), prints each run with its steps, and stops the worker. With `--external`, uses
the workers and services already configured (docker-compose).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _prebuild() -> None:
    subprocess.run([sys.executable, "-m", "codegen", "prebuild"], check=True)


@contextmanager
def _worker() -> Iterator[None]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "-c",
            "2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.demo", description=__doc__)
    parser.add_argument("--external", action="store_true", help="use running workers")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not args.external:
        _prebuild()
    import workflows
    from orchestrator.cli import show_run

    runs = []
    with _worker() if not args.external else _nothing():
        started = time.monotonic()
        runs.append(workflows.onboarding.start({"email": "ada@example.eu"}))
        order = {"order_id": "o-1001", "sku": "BOOK-42", "quantity": 2, "amount_cents": 4200}
        runs.append(workflows.order.start({**order, "card": "4242424242424242"}))
        runs.append(
            workflows.order.start({**order, "order_id": "o-1002", "card": "4000000000000002"})
        )
        finished = [workflows.onboarding.client.wait_for_run(r, timeout=args.timeout) for r in runs]
        elapsed = time.monotonic() - started
    for run in finished:
        print()
        show_run(run, sys.stdout)
    print(
        f"\n{len(finished)} runs finished in {elapsed:.1f}s "
        "(the order with card 4000000000000002 is declined on purpose)"
    )
    expected = ["completed", "completed", "failed"]
    return 0 if [r.status.value for r in finished] == expected else 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
