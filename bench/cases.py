"""The measured cases: a plain Celery chain, and workflows through the engine."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import redis
from celery import Celery, chain

from .common import CHAIN_QUEUE, STEPS, Figures


def bench_chain(app: Celery, r: redis.Redis, runs: int, batch: int) -> Figures:
    """A chain of STEPS tasks, the last of which writes the time it ran into Redis."""

    def start() -> tuple[str, float]:
        key = f"bench:chain:{uuid.uuid4().hex}"
        links = [
            app.signature(
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
            time.sleep(0.005)
        return float(value)

    done_at(start()[0])  # warm up
    latency = []
    for _ in range(runs):
        key, t0 = start()
        latency.append((done_at(key) - t0) * 1000)
    started = [start() for _ in range(batch)]
    t0 = started[0][1]
    finished = max(done_at(key) for key, _ in started)
    return Figures("plain Celery chain (Redis)", latency, finished - t0, batch)


def finished_at(client: Any, run_id: str, timeout: float = 300) -> float:
    run = client.wait_for_run(run_id, timeout=timeout, poll_interval=0.005)
    assert run.status.value == "completed", run.error
    return float(run.completed_at.timestamp())


def bench_workflow(
    label: str,
    client: Any,
    runs: int,
    batch: int,
    workflow: str = "tenstep",
    data: dict[str, Any] | None = None,
    steps: int = STEPS,
) -> Figures:
    data = data or {}
    finished_at(client, client.start(workflow, data))  # warm up
    latency = []
    for _ in range(runs):
        t0 = time.time()
        run_id = client.start(workflow, data)
        latency.append((finished_at(client, run_id) - t0) * 1000)
    t0 = time.time()
    ids = [client.start(workflow, data) for _ in range(batch)]
    finished = max(finished_at(client, run_id) for run_id in ids) if ids else t0
    return Figures(label, latency, finished - t0, batch, steps)


def bench_fairness(client: Any, short: int) -> tuple[float, float]:
    """p50 latency (ms) of 10-step runs started one after another, alone and then while a
    500-step run is under way: eager execution's budget must not let the long run hold a
    worker slot."""

    def latencies() -> list[float]:
        out = []
        for _ in range(short):
            t0 = time.time()
            out.append((finished_at(client, client.start("tenstep", {})) - t0) * 1000)
        return out

    alone = statistics.median(latencies())
    long_run = client.start("long", {"steps": 500})
    time.sleep(0.2)  # under way
    beside = statistics.median(latencies())
    finished_at(client, long_run)
    return alone, beside
