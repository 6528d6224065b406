"""Test helpers: prebuilt fixture packages, and environments for real worker processes."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.client import WorkflowClient
from orchestrator.config import Settings
from orchestrator.store import RunStore
from workers.app import create_app
from workers.dispatch import CeleryDispatcher
from workers.process import WorkerProcess

__all__ = [
    "FAST_RECOVERY",
    "REPO",
    "Cluster",
    "WorkerProcess",
    "import_fixture",
    "ledger",
    "prebuild",
    "prebuild_fixture",
    "run_ruff",
    "wait_for",
    "worker_env",
]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def prebuild_fixture(package: str, root: Path) -> Path:
    """Copy the fixture package under `root`, run the real prebuild on it, and return `root`
    (workers serve it with WORKFLOW_PACKAGE=<package>, from `root` or with it on PYTHONPATH)."""
    shutil.copytree(FIXTURES / package, root / package)
    prebuild(root, package)
    return root


def prebuild(root: Path, package: str) -> None:
    command = [sys.executable, "-m", "codegen", "prebuild", "--root", str(root)]
    subprocess.run([*command, "--package", package], check=True, cwd=REPO, capture_output=True)


def import_fixture(package: str, root: Path) -> object:
    prebuild_fixture(package, root)
    sys.path.insert(0, str(root))
    return importlib.import_module(package)


def worker_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")}
    # TEST_EAGER=off runs every real-worker test with eager execution off (default: on).
    env["WORKFLOW_EAGER"] = os.environ.get("TEST_EAGER", "on")
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (overrides.pop("PYTHONPATH", ""), str(REPO)) if p]
    )
    env.update(overrides)
    return env


def run_ruff(root: Path, files: list[str]) -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed")
    for command in (["check", "--no-cache"], ["format", "--check", "--diff", "--no-cache"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, *files],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"ruff {command[0]}:\n{done.stdout}{done.stderr}"


# Short leases and sweeps, so that recovery is observable in seconds.
FAST_RECOVERY = {
    "WORKFLOW_STEP_LEASE": "3s",
    "WORKFLOW_RUN_LEASE": "5s",
    "WORKFLOW_SWEEP_INTERVAL": "1s",
    "WORKFLOW_REDRIVE_AFTER": "5s",
}


class Cluster:
    """Workers plus a client for one test, all pointed at the same broker and store."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        settings = Settings.from_env(env)
        self.store = RunStore.from_settings(settings)
        # Like a web app: publishes by task name, without importing any generated tasks.
        self.client = WorkflowClient(self.store, CeleryDispatcher(settings, create_app(settings)))
        self.workers: list[WorkerProcess] = []

    def worker(self, **kwargs: Any) -> WorkerProcess:
        name = f"w{len(self.workers)}"
        log = self.tmp / f"{name}.log"
        worker = WorkerProcess(self.env, log, name=name, cwd=REPO, **kwargs).start()
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(w.log.read_text(errors="replace")[-4000:] for w in self.workers)

    def close(self) -> None:
        for w in self.workers:  # no warm shutdown needed: the test is over
            if w.proc is not None and w.proc.poll() is None:
                w.kill()
        self.store.close()


def ledger(cluster: Cluster) -> Counter[tuple[str, str]]:
    path = Path(cluster.env["CHAOS_LEDGER"])
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter((line.split()[1], line.split()[2]) for line in lines)


def wait_for(cluster: Cluster, run_id: str, timeout: float = 60) -> Any:
    try:
        return cluster.client.wait_for_run(run_id, timeout=timeout)
    except TimeoutError:
        pytest.fail(f"run did not finish; worker logs:\n{cluster.logs()}")
