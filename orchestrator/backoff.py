"""Waiting out failures: one backoff rule for every background loop and store retry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1, 2, ...): doubling from
    `initial`, never more than `cap`."""
    return min(cap, initial * 2.0 ** max(failures - 1, 0))


def retrying(
    operation: Callable[[], T],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    budget: float,
    what: str,
    initial: float = 0.05,
    cap: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`operation()`, tried again after a `retry_on` error (with backoff) until `budget`
    seconds have gone by; the last error is raised then. Only for operations that are safe to
    repeat: an attempt that failed may still have taken effect."""
    deadline = clock() + budget
    failures = 0
    while True:
        try:
            return operation()
        except retry_on as exc:
            failures += 1
            delay = backoff_delay(failures, initial, cap)
            if clock() + delay > deadline:
                raise
            log.warning("%s failed (%s); trying again in %.2fs", what, _first_line(exc), delay)
            sleep(delay)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
