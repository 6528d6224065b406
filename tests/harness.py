"""Test helpers: prebuilt fixture packages and real `celery worker` processes."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def prebuild_fixture(package: str, root: Path) -> Path:
    """Copy the fixture package under `root`, run the real prebuild on it (tasks module
    `<package>_tasks`), and return `root` (to be put on sys.path / PYTHONPATH)."""
    shutil.copytree(FIXTURES / package, root / package)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "codegen",
            "prebuild",
            "--root",
            str(root),
            "--package",
            package,
            "--tasks-out",
            f"{package}_tasks.py",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    return root


def import_fixture(package: str, root: Path) -> object:
    prebuild_fixture(package, root)
    sys.path.insert(0, str(root))
    return importlib.import_module(package)


class WorkerProcess:
    """One `celery -A workers worker` in its own process group (so SIGKILL takes the pool
    children too, as a machine crash would)."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        name: str = "w",
        queues: str | None = None,
    ) -> None:
        self.env = env
        self.log = log
        self.args = [
            sys.executable, "-m", "celery", "-A", "workers", "worker",
            f"--concurrency={concurrency}", f"--pool={pool}", f"--hostname={name}@%h",
            "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if queues:
            self.args.append(f"--queues={queues}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log.read_text(errors="replace"):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no ack, no cleanup."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def worker_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (overrides.pop("PYTHONPATH", ""), str(REPO)) if p]
    )
    env.update(overrides)
    return env
