"""Fault injection: 150 runs on two workers while worker process groups are SIGKILLed and
replaced, Redis is killed and comes back empty, and PostgreSQL restarts without a clean
shutdown (each a private server on a free port). No run may be lost, no step recorded twice,
and every side effect beyond one per step must belong to a process that was killed."""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, worker_env
from private_services import PrivatePostgres, PrivateRedis

from orchestrator.models import RunStatus, StepStatus

pytestmark = pytest.mark.integration

RUNS = 150


@pytest.fixture
def servers() -> Iterator[tuple[PrivateRedis, PrivatePostgres]]:
    redis_server, postgres = PrivateRedis().start(), PrivatePostgres().start()
    yield redis_server, postgres
    redis_server.close()
    postgres.close()


def group_pids(pgid: int) -> set[int]:
    """Every process of a process group (a worker's main process and its pool children)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
                found.add(int(entry))
    return found


@pytest.mark.parametrize("eager", ["on", "off"])
def test_no_run_lost_and_no_step_recorded_twice_under_faults(
    chaos_root: Path, tmp_path: Path, servers: tuple[PrivateRedis, PrivatePostgres], eager: str
) -> None:
    redis_server, postgres = servers
    env = worker_env(
        WORKFLOW_EAGER=eager,
        PYTHONPATH=str(chaos_root),
        WORKFLOW_PACKAGE="chaosflows",
        WORKFLOW_HOME=str(tmp_path / "home"),
        WORKFLOW_BROKER_URL=redis_server.url,
        WORKFLOW_DATABASE_URL=postgres.url,
        CHAOS_LEDGER=str(tmp_path / "ledger.txt"),
        WORKFLOW_STEP_LEASE="2s",
        WORKFLOW_RUN_LEASE="3s",
        WORKFLOW_SWEEP_INTERVAL="500ms",
        WORKFLOW_REDRIVE_AFTER="2s",
    )
    rng = random.Random(7)
    cluster = Cluster(tmp_path, env)
    killed: set[int] = set()
    faults: list[str] = []
    run_ids: list[str] = []
    try:
        workers = [cluster.worker(concurrency=2), cluster.worker(concurrency=2)]
        started = time.monotonic()
        plan = {12.0: "redis", 20.0: "postgres"}
        next_kill = 4.0
        while time.monotonic() - started < 32:
            elapsed = time.monotonic() - started
            # Started throughout, so that faults meet runs at every stage.
            while len(run_ids) < min(RUNS, (elapsed + 1) * RUNS / 30):
                data = {"steps": 3, "slow_step": rng.randrange(3), "slow_seconds": 0.5}
                try:
                    run_ids.append(cluster.client.start("chain", data))
                except Exception:  # the store is restarting: try again next round
                    break
            for at, what in list(plan.items()):
                if elapsed >= at:
                    del plan[at]
                    faults.append(f"{elapsed:.1f}s {what}")
                    if what == "redis":
                        redis_server.kill()  # and back, empty: every queued message is gone
                        redis_server.start()
                    else:
                        postgres.restart()
            if elapsed >= next_kill:
                victim = rng.randrange(len(workers))
                worker = workers[victim]
                assert worker.proc is not None
                killed |= group_pids(worker.proc.pid)
                worker.kill()  # the whole group: no warm shutdown, no ack, no cleanup
                faults.append(f"{elapsed:.1f}s SIGKILL {worker.log.name}")
                workers[victim] = cluster.worker(concurrency=2)
                next_kill += rng.uniform(4, 7)
            time.sleep(0.2)
        deadline = time.monotonic() + 90
        runs = []
        for run_id in run_ids:
            while True:
                try:
                    run = cluster.client.get_run(run_id)
                except Exception:
                    run = None
                if run is not None and run.status in (RunStatus.COMPLETED, RunStatus.FAILED):
                    break
                assert time.monotonic() < deadline, f"run {run_id} lost; faults: {faults}"
                time.sleep(0.1)
            runs.append(run)
    finally:
        cluster.close()
    assert len(runs) >= 100 and len([f for f in faults if "SIGKILL" in f]) >= 4, faults
    assert all(r.status is RunStatus.COMPLETED for r in runs), [r.error for r in runs]
    assert all(r.output == {"total": 6.0} for r in runs)

    attempts: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for line in Path(env["CHAOS_LEDGER"]).read_text().splitlines():
        run_id, step, event, attempt, pid, _ = line.split()
        attempts[(run_id, step)].append([event, attempt, pid])
    extra = 0
    for run in runs:
        for step in run.steps:
            # Recorded once: one finished step row, its result the one every attempt computes.
            assert step.status is StepStatus.SUCCEEDED and step.result is not None
            seen = attempts[(run.id, step.name)]
            ends = [pid for event, _, pid in seen if event == "end"]
            starts = [pid for event, _, pid in seen if event == "start"]
            assert ends, (run.id, step.name)
            # Every side effect beyond the one that counted came from a killed process.
            for pid in [*starts[:-1], *ends[:-1]]:
                assert int(pid) in killed, (run.id, step.name, seen, faults)
            extra += len(starts) - 1
    done = f"{len(runs)} runs; faults: {faults}; {extra} extra step starts, all in killed ones"
    print(f"\n{done}")
