"""The worker's task module for the bench: the generated workflow tasks plus the plain Celery
chain it is compared with, in the same worker."""

from __future__ import annotations

import os
import time

import redis
from benchflows_tasks import ROUTES as WORKFLOW_ROUTES

from workers.app import app

ROUTES: dict[str, tuple[str, str]] = {
    **WORKFLOW_ROUTES,
    "bench.chain_link": ("chain", "bench.chain"),
}

_redis = redis.Redis.from_url(os.environ["WORKFLOW_BROKER_URL"])


@app.task(name="bench.chain_link")
def chain_link(key: str, index: int, last: int) -> None:
    if index == last:
        _redis.set(key, repr(time.time()), ex=3600)
