"""Starting and stopping `celery -A workers worker` processes (the demo, tests and bench)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class WorkerProcess:
    """One worker in its own process group, so that `kill()` takes the pool children too, as
    a machine crash would."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        name: str = "w",
        queues: str | None = None,
        cwd: Path | None = None,
        extra_args: list[str] | None = None,
        celery: Sequence[str] = (sys.executable, "-m", "celery"),
    ) -> None:
        self.env = dict(env)
        self.log = log
        self.cwd = cwd
        self.args = [
            *celery, "-A", "workers", "worker",
            f"--concurrency={concurrency}", f"--pool={pool}", f"--hostname={name}@%h",
            # INFO: readiness is detected from the log's "ready." line.
            "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if queues:
            self.args.append(f"--queues={queues}")
        self.args += extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        """Start and wait until the worker logs that it is ready."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                self.args, env=self.env, cwd=self.cwd, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log.read_text(errors="replace"):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the worker did not start (log {self.log}):\n{tail}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no ack, no cleanup."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL if it takes too long."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # The main process only: it shuts its pool down itself (signalling the whole group
        # would kill the pool children under it and slow the shutdown).
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
