"""Keeping leases alive while work runs.

One daemon thread per process renews every registered lease, instead of a thread per step:
starting a thread for a 1 ms step would cost more than the step.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

log = logging.getLogger(__name__)

Renew = Callable[[], bool]


class LeaseKeeper(Protocol):
    def hold(self, renew: Renew) -> AbstractContextManager[None]: ...


class NoLeaseKeeper:
    """For in-process tests, where nothing else can take a lease over."""

    @contextmanager
    def hold(self, renew: Renew) -> Iterator[None]:
        yield


class HeartbeatKeeper:
    """Calls each held lease's `renew` every `interval` seconds from a background thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._held: dict[int, Renew] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._wake = threading.Event()

    def _ensure_thread(self) -> None:
        # Started lazily and per process: a prefork pool child does not inherit threads.
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._held = {}
        threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True).start()

    def _loop(self) -> None:
        while not self._wake.wait(self.interval):
            with self._lock:
                renewals = list(self._held.values())
            for renew in renewals:
                try:
                    if not renew():
                        log.warning("a lease could not be renewed: another worker took it over")
                except Exception:
                    log.exception("renewing a lease failed; will retry")

    @contextmanager
    def hold(self, renew: Renew) -> Iterator[None]:
        with self._lock:
            self._ensure_thread()
            key = id(renew)
            self._held[key] = renew
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(key, None)
