"""`python -m bench.redrive`: re-drives under a backlog (Redis + PostgreSQL).

Starts one run whose first message is lost (stored, never published), then `--runs` runs of
the 10-step workflow at once on `--workers` workers: their messages wait in queues for many
times WORKFLOW_REDRIVE_AFTER. Prints the tasks the workers received, how many of them the
sweepers re-drove, and how long the lost message waited to be re-driven.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import redis
import sqlalchemy as sa

from bench.common import HERE, REPO, add_service_options, fresh_schema, prebuild


class DroppingDispatcher:
    def dispatch(self, messages: object) -> None:
        raise ConnectionError("dropped on purpose")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redrive", description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--redrive-after", default="5s")
    parser.add_argument("--sweep-interval", default="1s")
    # Off: every step and pass through the broker, the most messages queued (eager execution
    # keeps a sequential run's messages in one process).
    parser.add_argument("--eager", choices=["on", "off"], default="off")
    add_service_options(parser)
    args = parser.parse_args()

    prebuild()
    sys.path[:0] = [str(HERE), str(REPO)]
    import benchflows  # noqa: F401

    from orchestrator.client import WorkflowClient
    from orchestrator.config import Settings
    from orchestrator.durations import parse_duration
    from orchestrator.store import RunStore
    from orchestrator.store.tables import runs
    from workers.app import create_app
    from workers.dispatch import CeleryDispatcher
    from workers.process import WorkerProcess

    redis.Redis.from_url(args.redis).flushdb()
    logs = Path(tempfile.mkdtemp(prefix="bench-redrive-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")},
        "PYTHONPATH": f"{HERE}:{REPO}",
        "WORKFLOW_BROKER_URL": args.redis,
        "WORKFLOW_DATABASE_URL": fresh_schema(args.postgres),
        "WORKFLOW_PACKAGE": "benchflows",
        "WORKFLOW_HOME": str(logs),
        "WORKFLOW_REDRIVE_AFTER": args.redrive_after,
        "WORKFLOW_SWEEP_INTERVAL": args.sweep_interval,
        "WORKFLOW_EAGER": args.eager,
    }
    settings = Settings.from_env(env)
    store = RunStore.from_settings(settings)
    client = WorkflowClient(store, CeleryDispatcher(settings, create_app(settings)))
    workers = [
        WorkerProcess(env, logs / f"w{i}.log", name=f"w{i}", concurrency=args.concurrency, cwd=REPO)
        for i in range(args.workers)
    ]
    lost = WorkflowClient(store, DroppingDispatcher()).start("tenstep", {})  # type: ignore[arg-type]
    try:
        for worker in workers:
            worker.start()
        started = time.monotonic()
        ids = [client.start("tenstep", {}) for _ in range(args.runs)]
        created = store.get_run(lost, steps=False).created_at  # type: ignore[union-attr]
        redriven = None
        engine = store.engine  # type: ignore[attr-defined]
        while redriven is None and time.monotonic() - started < 600:
            with engine.connect() as conn:
                at = conn.execute(sa.select(runs.c.requested_at).where(runs.c.id == lost)).scalar()
            if at > created:
                redriven = (at - created).total_seconds()
            time.sleep(0.02)
        for run_id in [lost, *ids]:
            run = client.wait_for_run(run_id, timeout=900, poll_interval=0.2)
            assert run.status.value == "completed", run.error
        took = time.monotonic() - started
        time.sleep(2 * parse_duration(args.sweep_interval).total_seconds())
    finally:
        for worker in workers:
            worker.stop()
        store.close()
    log = "".join(w.log.read_text(errors="replace") for w in workers)
    received = len(re.findall(r"Task \S+\[[0-9a-f-]+\] received", log))
    counts = {
        kind: sum(int(n) for n in re.findall(rf"{kind}=(\d+)", log))
        for kind in ("lapsed_steps", "stale_steps", "due_timers", "stalled_runs")
    }
    redrives = counts["stale_steps"] + counts["stalled_runs"]
    print(
        f"\n{args.runs} runs x 10 steps at once, {args.workers} workers x {args.concurrency}, "
        f"WORKFLOW_REDRIVE_AFTER={args.redrive_after}, sweep every {args.sweep_interval}; "
        f"all done in {took:.0f}s"
    )
    print(f"tasks received        {received}")
    print(f"re-driven (lost?)     {redrives} = {redrives / max(received, 1):.1%} of tasks received")
    print(f"  stalled runs        {counts['stalled_runs']}")
    print(f"  stale steps         {counts['stale_steps']}")
    print(f"lost message re-sent  {redriven:.1f}s after it was due" if redriven else "never")
    return 0


if __name__ == "__main__":
    sys.exit(main())
