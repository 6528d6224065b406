"""The plain Celery chain the workflow is compared with, run by the same worker (included
with `--include=bench.bench_tasks` beside the workflow package's generated tasks)."""

from __future__ import annotations

import functools
import os
import time

import redis

from workers.app import app


@functools.cache
def _redis() -> redis.Redis:
    # The chain runs on a Redis broker; the last link writes when it ran there.
    return redis.Redis.from_url(os.environ["WORKFLOW_BROKER_URL"])


@app.task(name="bench.chain_link")
def chain_link(key: str, index: int, last: int) -> None:
    if index == last:
        _redis().set(key, repr(time.time()), ex=3600)
