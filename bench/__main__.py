"""`python -m bench`: a 10-step remote workflow against a plain Celery chain of 10 tasks, on
the same Redis broker and the same worker (PostgreSQL run store), for each queue grouping.

Latency: sequential runs, start to completion. Throughput: many runs started at once, steps
finished per second. Prints a table and the workflow/chain ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis
import sqlalchemy as sa
from celery import chain

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = 10
CHAIN_QUEUE = "bench.chain"


@dataclass
class Figures:
    label: str
    latency_ms: list[float]
    throughput_s: float  # wall seconds for the concurrent batch
    batch: int

    @property
    def p50(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def p95(self) -> float:
        return sorted(self.latency_ms)[int(0.95 * (len(self.latency_ms) - 1))]

    @property
    def steps_per_s(self) -> float:
        return self.batch * STEPS / self.throughput_s


def prebuild() -> None:
    subprocess.run(
        [sys.executable, "-m", "codegen", "prebuild", "--root", str(HERE), "--package",
         "benchflows"],
        check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """--redis and --postgres (BENCH_REDIS_URL, BENCH_POSTGRES_URL): the servers benched on."""
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test"),
    )


def fresh_schema(base: str) -> str:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{schema}"


def bench_chain(app: object, r: redis.Redis, runs: int, batch: int) -> Figures:
    def start() -> tuple[str, float]:
        key = f"bench:chain:{uuid.uuid4().hex}"
        links = [
            app.signature(  # type: ignore[attr-defined]
                "bench.chain_link", args=(key, i, STEPS - 1), immutable=True, queue=CHAIN_QUEUE
            )
            for i in range(STEPS)
        ]
        t0 = time.time()
        chain(*links).apply_async()
        return key, t0

    def done_at(key: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while (value := r.get(key)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(key)
            time.sleep(0.02)
        return float(value)

    start()  # warm up
    latency = []
    for _ in range(runs):
        key, t0 = start()
        latency.append((done_at(key) - t0) * 1000)
    started = [start() for _ in range(batch)]
    t0 = started[0][1]
    finished = max(done_at(key) for key, _ in started)
    return Figures("celery chain", latency, finished - t0, batch)


def bench_workflow(label: str, client: object, runs: int, batch: int) -> Figures:
    def finish(run_id: str) -> float:
        run = client.wait_for_run(run_id, timeout=120, poll_interval=0.02)  # type: ignore[attr-defined]
        assert run.status.value == "completed", run.error
        return run.completed_at.timestamp()  # type: ignore[no-any-return]

    finish(client.start("tenstep", {}))  # type: ignore[attr-defined]
    latency = []
    for _ in range(runs):
        t0 = time.time()
        run_id = client.start("tenstep", {})  # type: ignore[attr-defined]
        latency.append((finish(run_id) - t0) * 1000)
    t0 = time.time()
    ids = [client.start("tenstep", {}) for _ in range(batch)]  # type: ignore[attr-defined]
    finished = max(finish(run_id) for run_id in ids)
    return Figures(label, latency, finished - t0, batch)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="sequential runs for latency")
    parser.add_argument("--batch", type=int, default=50, help="concurrent runs for throughput")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--groupings", default="step,workflow,shared")
    add_service_options(parser)
    args = parser.parse_args()

    prebuild()
    sys.path[:0] = [str(HERE), str(REPO)]
    import benchflows  # noqa: F401

    from orchestrator.client import WorkflowClient
    from orchestrator.config import Settings
    from orchestrator.manifest import Manifest
    from orchestrator.store import RunStore
    from workers.app import create_app
    from workers.dispatch import CeleryDispatcher
    from workers.process import WorkerProcess
    from workers.routing import manifest_queues

    r = redis.Redis.from_url(args.redis)
    rows: list[tuple[Figures, Figures]] = []
    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    for grouping in args.groupings.split(","):
        r.flushdb()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")},
            "PYTHONPATH": f"{HERE}:{REPO}",
            "WORKFLOW_BROKER_URL": args.redis,
            "WORKFLOW_DATABASE_URL": fresh_schema(args.postgres),
            "WORKFLOW_PACKAGE": "benchflows",
            "WORKFLOW_QUEUES": grouping,
            "WORKFLOW_HOME": str(logs),
        }
        settings = Settings.from_env(env)
        app = create_app(settings)
        manifest = Manifest.load(HERE / "benchflows" / "_manifest.json")
        queues = [*manifest_queues(manifest, settings), CHAIN_QUEUE]
        store = RunStore.from_settings(settings)
        client = WorkflowClient(store, CeleryDispatcher(settings, app))
        log = logs / f"worker-{grouping}.log"
        print(f"grouping={grouping}: {len(queues)} queues; worker log {log}", file=sys.stderr)
        worker = WorkerProcess(
            env,
            log,
            concurrency=args.concurrency,
            cwd=REPO,
            queues=",".join(queues),
            # The plain chain's task, beside the workflow package's generated ones.
            extra_args=["--include=bench.bench_tasks"],
        )
        with worker:
            base = bench_chain(app, r, args.runs, args.batch)
            flow = bench_workflow(
                f"workflow ({grouping} queues: {len(queues)})", client, args.runs, args.batch
            )
        rows.append((base, flow))
        store.close()

    print(
        f"\n10 steps per run; latency over {args.runs} sequential runs; throughput over "
        f"{args.batch} concurrent runs; {args.concurrency} worker processes, Redis + PostgreSQL\n"
    )
    header = f"{'':38} {'p50 ms':>8} {'p95 ms':>8} {'ms/step':>8} {'steps/s':>8}"
    print(header)
    print("-" * len(header))
    for base, flow in rows:
        for f in (base, flow):
            print(
                f"{f.label:38} {f.p50:8.1f} {f.p95:8.1f} {f.p50 / STEPS:8.1f} {f.steps_per_s:8.0f}"
            )
        print(
            f"{'  ratio workflow/chain':38} {flow.p50 / base.p50:7.1f}x "
            f"{flow.p95 / base.p95:7.1f}x {'':8} {flow.steps_per_s / base.steps_per_s:7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
