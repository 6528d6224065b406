"""Keeping leases alive while work runs.

One daemon thread per process renews every registered lease, instead of a thread per step:
starting a thread for a 1 ms step would cost more than the step.

A holder keeps renewing while it records its outcome (a store that is reconnecting may take
seconds to accept the write, and the lease must not lapse meanwhile), so a renewal can find
the lease already given up by that very write. The holder says so first (`Held.finishing`):
only a renewal refused while the holder still works means another worker took over.
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


class Held:
    """A lease being kept alive."""

    def __init__(self, renew: Renew, what: str) -> None:
        self.renew = renew
        self.what = what
        self.released = False  # the holder is writing (or has written) its outcome

    def finishing(self) -> None:
        """The holder is about to release the lease with its final write: from now on, a
        refused renewal is that write having landed, not a takeover."""
        self.released = True


class LeaseKeeper(Protocol):
    def hold(self, renew: Renew, what: str = "a lease") -> AbstractContextManager[Held]: ...


class NoLeaseKeeper:
    """For in-process tests, where nothing else can take a lease over."""

    @contextmanager
    def hold(self, renew: Renew, what: str = "a lease") -> Iterator[Held]:
        yield Held(renew, what)


class HeartbeatKeeper:
    """Calls each held lease's `renew` every `interval` seconds from a background thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._held: dict[int, Held] = {}
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
            try:
                self.renew_all()
            except Exception:  # the loop must outlive anything one round throws
                log.exception("renewing leases failed; will retry")

    def renew_all(self) -> None:
        """One round of renewals (what the heartbeat thread does every `interval`)."""
        with self._lock:
            leases = list(self._held.items())
        for key, held in leases:
            with self._lock:
                if self._held.get(key) is not held:
                    continue  # given up since the round began: nothing to renew
            try:
                renewed = held.renew()
            except Exception as exc:
                log.warning("renewing %s failed (%s); will retry", held.what, exc)
                continue
            if not renewed and not held.released:
                log.warning("%s could not be renewed: another worker took it over", held.what)

    @contextmanager
    def hold(self, renew: Renew, what: str = "a lease") -> Iterator[Held]:
        held = Held(renew, what)
        with self._lock:
            self._ensure_thread()
            key = id(held)
            self._held[key] = held
        try:
            yield held
        finally:
            with self._lock:
                self._held.pop(key, None)
