"""`python -m bench`: a 10-step remote workflow against a plain Celery chain of 10 tasks, in
one run, on the same machine:

- the chain and the workflow on the same Redis broker and the same worker (PostgreSQL run
  store), with eager execution (the default) and without it;
- DBOS on the same PostgreSQL server (the optional `bench` extra);
- the embedded default (SQLite and the file broker), and its worker's CPU use when idle;
- a 500-step workflow (per-step cost against the 10-step one), and fairness: 10-step runs
  while a 500-step run is under way.

Latency: runs one at a time, start to completion (p50, p95). Throughput: `--batch` runs
started at once, steps finished per second. Ratios are against the chain of the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from .cases import bench_chain, bench_fairness, bench_workflow
from .common import (
    CHAIN_QUEUE,
    HERE,
    REPO,
    Figures,
    add_service_options,
    bench_env,
    fresh_schema,
    group_cpu_seconds,
    prebuild,
    table,
)
from .dbos_case import bench_dbos


@contextmanager
def serving(env: dict[str, str], log: Path, concurrency: int) -> Iterator[tuple[Any, Any]]:
    """A worker serving the bench package and the chain's task, and a client beside it."""
    from orchestrator.client import WorkflowClient
    from orchestrator.config import Settings
    from orchestrator.manifest import Manifest
    from orchestrator.store import RunStore
    from workers.app import create_app
    from workers.dispatch import CeleryDispatcher
    from workers.process import WorkerProcess
    from workers.routing import manifest_queues

    settings = Settings.from_env(env)
    app = create_app(settings)
    manifest = Manifest.load(HERE / "benchflows" / "_manifest.json")
    queues = [*manifest_queues(manifest, settings), CHAIN_QUEUE]
    store = RunStore.from_settings(settings)
    client = WorkflowClient(store, CeleryDispatcher(settings, app))
    worker = WorkerProcess(
        env, log, concurrency=concurrency, cwd=REPO, queues=",".join(queues),
        # The plain chain's task, beside the workflow package's generated ones.
        extra_args=["--include=bench.bench_tasks"],
    )  # fmt: skip
    print(f"  worker log {log}", file=sys.stderr)
    with worker:
        yield app, client, worker
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="sequential runs for latency")
    parser.add_argument("--batch", type=int, default=50, help="concurrent runs for throughput")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--long-runs", type=int, default=3, help="500-step runs to time")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to watch idle CPU")
    add_service_options(parser)
    args = parser.parse_args()

    prebuild()
    sys.path[:0] = [str(HERE), str(REPO)]
    import benchflows  # noqa: F401

    r = redis.Redis.from_url(args.redis)
    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    rows: list[Figures] = []
    notes: list[str] = []

    print("Redis + PostgreSQL, eager execution on (the default)", file=sys.stderr)
    r.flushdb()
    env = bench_env(WORKFLOW_BROKER_URL=args.redis, WORKFLOW_HOME=str(logs / "redis"),
                    WORKFLOW_DATABASE_URL=fresh_schema(args.postgres))  # fmt: skip
    with serving(env, logs / "worker-eager.log", args.concurrency) as (app, client, _):
        chain = bench_chain(app, r, args.runs, args.batch)
        eager = bench_workflow("workflow, eager (default)", client, args.runs, args.batch)
        long = bench_workflow(
            "workflow of 500 steps, eager", client, args.long_runs, 0, "long", {"steps": 500},
            steps=500,
        )  # fmt: skip
        alone, beside = bench_fairness(client, args.runs)
    rows += [chain, eager]

    print("Redis + PostgreSQL, eager execution off", file=sys.stderr)
    r.flushdb()
    env = bench_env(WORKFLOW_BROKER_URL=args.redis, WORKFLOW_HOME=str(logs / "redis-off"),
                    WORKFLOW_DATABASE_URL=fresh_schema(args.postgres),
                    WORKFLOW_EAGER="off")  # fmt: skip
    with serving(env, logs / "worker-broker.log", args.concurrency) as (app, client, _):
        rows.append(
            bench_workflow(
                "workflow, eager off (every hop a message)", client, args.runs, args.batch
            )
        )

    print("DBOS", file=sys.stderr)
    dbos = bench_dbos(args.postgres, args.runs, args.batch)
    if dbos is not None:
        rows.append(dbos)
    else:
        notes.append('DBOS: not installed (pip install -e ".[bench]")')

    print("embedded default (SQLite + the file broker)", file=sys.stderr)
    env = bench_env(WORKFLOW_HOME=str(logs / "embedded"))
    with serving(env, logs / "worker-embedded.log", args.concurrency) as (_, client, worker):
        embedded = bench_workflow("embedded default, eager", client, args.runs, args.batch)
        time.sleep(1)
        before = group_cpu_seconds(worker.proc.pid)
        time.sleep(args.idle)
        idle = (group_cpu_seconds(worker.proc.pid) - before) / args.idle
    rows.append(embedded)
    rows.append(long)

    print(
        f"\n10 steps per run unless said; latency: {args.runs} runs one at a time; throughput: "
        f"{args.batch} runs at once; {args.concurrency} worker processes; ratios against the "
        "chain (ms/step and steps/s)\n"
    )
    print(table(rows, chain))
    print()
    print(
        f"500-step workflow: {long.ms_per_step / eager.ms_per_step:.2f}x the 10-step cost per step"
    )
    print(
        f"embedded default: {embedded.ms_per_step / eager.ms_per_step:.2f}x the Redis + "
        f"PostgreSQL cost per step; idle worker: {idle * 100:.1f} % of a core"
    )
    print(
        f"fairness: 10-step runs take {alone:.1f} ms alone, {beside:.1f} ms while a 500-step "
        "run is under way (eager execution hands on through the broker after its budget)"
    )
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
