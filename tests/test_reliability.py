"""Regressions of the fault-injection findings: background loops that survive, writes that
get through a database restart, honest lease warnings, cancelled steps that stay cancelled,
no re-drive storm under a backlog, fast recovery from a dead pool child, and a worker that
stops when its whole process group is told to."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, WorkerProcess, ledger, worker_env
from private_services import PrivatePostgres

from orchestrator.client import WorkflowClient
from orchestrator.dispatch import PassDispatch, StepDispatch
from orchestrator.leases import HeartbeatKeeper
from orchestrator.models import Run, RunStatus, StepKind, StepRun, StepStatus
from orchestrator.store import PassClaim, RunStore
from orchestrator.store.sqlite import SqliteStore
from orchestrator.testing import InProcessRunner

T0 = InProcessRunner().clock()


class DroppingDispatcher:
    """A broker that accepts nothing: what a crash between commit and publish looks like."""

    def dispatch(self, messages: object) -> None:
        raise ConnectionError("broker unreachable")


def chaos_env(root: Path, tmp_path: Path, **settings: str) -> dict[str, str]:
    return worker_env(
        PYTHONPATH=str(root),
        WORKFLOW_PACKAGE="chaosflows",
        WORKFLOW_HOME=str(tmp_path / "home"),
        CHAOS_LEDGER=str(tmp_path / "ledger.txt"),
        **settings,
    )


@pytest.fixture(params=["redis+postgres", "embedded"])
def brokers(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    return {
        "WORKFLOW_BROKER_URL": request.getfixturevalue("redis_url"),
        "WORKFLOW_DATABASE_URL": request.getfixturevalue("postgres_url"),
    }


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    yield pg
    pg.close()


def ledger_lines(path: str) -> list[list[str]]:
    p = Path(path)
    return [line.split() for line in p.read_text().splitlines()] if p.exists() else []


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- 1. a worker that starts during a database outage still sweeps --------------------------


@pytest.mark.integration
def test_a_worker_started_while_the_database_is_down_sweeps_once_it_is_back(
    chaos_root: Path, tmp_path: Path, redis_url: str, private_postgres: PrivatePostgres
) -> None:
    env = chaos_env(
        chaos_root, tmp_path,
        WORKFLOW_BROKER_URL=redis_url, WORKFLOW_DATABASE_URL=private_postgres.url,
        WORKFLOW_SWEEP_INTERVAL="500ms", WORKFLOW_REDRIVE_AFTER="1s",
    )  # fmt: skip
    with WorkerProcess(env, tmp_path / "worker.log", cwd=chaos_root) as worker:
        wait_until(lambda: "sweep failed" in worker.log.read_text(), 30, "a failed sweep")
        private_postgres.start()
        store = RunStore.from_url(private_postgres.url)
        # Stored, never published: only the sweeper can start it.
        run_id = WorkflowClient(store, DroppingDispatcher()).start("chain", {"steps": 2})
        cluster = Cluster(tmp_path, env)
        run = cluster.client.wait_for_run(run_id, timeout=60)
        cluster.close()
        store.close()
    assert run.status is RunStatus.COMPLETED, worker.log.read_text()[-3000:]


def test_the_sweeper_loop_outlives_every_failure() -> None:
    """The loop itself, in process: a runtime that cannot be built (a database that is down)
    and a sweep that raises are logged and tried again; the loop ends only when told to."""
    import threading

    from workers.runtime import Runtime, sweep_forever

    stop = threading.Event()
    builds: list[bool] = []
    sweeps: list[bool] = []

    class Sweeps:
        def sweep_once(self) -> None:
            sweeps.append(True)
            if len(sweeps) == 2:
                raise ConnectionError("broker down")
            if len(sweeps) == 3:
                stop.set()

    def build() -> Runtime:
        builds.append(True)
        if len(builds) <= 2:
            raise OSError("connection refused")
        return Runtime(None, None, None, None, Sweeps())  # type: ignore[arg-type]

    thread = threading.Thread(
        target=sweep_forever, args=(stop, build, 0.01, 0.01), name="wf-sweeper", daemon=True
    )
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert (len(builds), len(sweeps)) == (5, 3)


# -- 2. a step that finishes across a PostgreSQL restart is recorded once -----------------


@pytest.mark.integration
def test_a_step_finishing_just_after_a_postgres_restart_does_not_run_again(
    chaos_root: Path, tmp_path: Path, redis_url: str, private_postgres: PrivatePostgres
) -> None:
    private_postgres.start()
    env = chaos_env(
        chaos_root, tmp_path,
        WORKFLOW_BROKER_URL=redis_url, WORKFLOW_DATABASE_URL=private_postgres.url,
    )  # fmt: skip
    cluster = Cluster(tmp_path, env)
    try:
        cluster.worker(concurrency=1)
        run_id = cluster.client.start("chain", {"steps": 3, "slow_step": 1, "slow_seconds": 2})
        wait_until(lambda: ledger(cluster)[("work-1", "start")] == 1, 30, "work-1 to start")
        private_postgres.restart()  # every pooled connection of the worker is now dead
        restarted = time.monotonic()
        deadline = time.monotonic() + 60
        while True:  # the client's own connections died too: reading retries like a user would
            try:
                run = cluster.client.get_run(run_id)
            except Exception:
                run = None
            if run is not None and run.status is RunStatus.COMPLETED:
                break
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.1)
        took = time.monotonic() - restarted
    finally:
        cluster.close()
    assert [s.attempts for s in run.steps] == [1, 1, 1], cluster.logs()
    seen = ledger(cluster)
    assert (seen[("work-1", "start")], seen[("work-1", "end")]) == (1, 1)
    assert took < 20  # not a whole lease (30 s) later


# -- 3. lease warnings only for a real takeover ---------------------------------------------


def test_renewal_warnings_mean_a_takeover_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SqliteStore("sqlite://")
    store.create_run(Run(id="r", workflow="wf", status=RunStatus.PENDING, created_at=T0,
                         updated_at=T0))  # fmt: skip
    claim = store.claim_run("r", "p", T0, T0 + timedelta(seconds=30))
    assert isinstance(claim, PassClaim)
    for name in ("a", "b"):
        step = StepRun(run_id="r", name=name, kind=StepKind.REMOTE, status=StepStatus.SCHEDULED,
                       seq=ord(name), target="x", task="wf.wf.x", created_at=T0)  # fmt: skip
        store.commit_pass("r", "p", T0, T0 + timedelta(seconds=30), [step])
    lease = T0 + timedelta(seconds=30)
    assert store.claim_step("r", "a", "w1", T0, lease) and store.claim_step(
        "r", "b", "w1", T0, lease
    )
    keeper = HeartbeatKeeper(interval=3600)  # rounds are driven by hand below
    renewed: list[str] = []

    def renewal(name: str, owner: str) -> Any:
        def renew() -> bool:
            renewed.append(name)
            return store.renew_step_lease("r", name, owner, T0 + timedelta(seconds=60))

        return renew

    with caplog.at_level(logging.WARNING):
        with keeper.hold(renewal("a", "w1"), "step a") as held:
            keeper.renew_all()
            held.finishing()
            assert store.finish_step("r", "a", T0, result=1)  # the holder's own final write
            keeper.renew_all()  # refused: the step is done, which is no takeover
        keeper.renew_all()  # released: not renewed at all
        assert renewed == ["a", "a"] and caplog.text == ""
        with keeper.hold(renewal("b", "w1"), "step b"):
            later = T0 + timedelta(minutes=5)  # w1's lease lapsed; w2 takes the step over
            assert store.claim_step("r", "b", "w2", later, later + timedelta(seconds=30))
            keeper.renew_all()
    assert caplog.text.count("could not be renewed: another worker took it over") == 1
    assert "step b" in caplog.text


# -- 4. queued steps of a cancelled run never run -------------------------------------------


def test_a_step_message_delivered_after_cancel_is_a_no_op(engineflows: Any) -> None:
    engineflows.flows.CALLS.clear()
    runner = InProcessRunner()
    run_id = runner.start("cancellable", {})
    runner.drain(limit=1)  # the first pass: "first" is scheduled, its message queued
    (queued,) = [m for m in runner.dispatcher.queue if isinstance(m, StepDispatch)]
    runner.client.cancel_run(run_id, "changed our mind")
    # The step's message comes before the cancel pass (a queue has no order between them).
    runner.dispatcher.queue.remove(queued)
    runner._run_step(queued)
    assert "double" not in engineflows.flows.CALLS
    # Nor does the sweeper bring the step back.
    runner.clock.advance(3600)
    assert runner.sweeper.sweep_once().stale_steps == 0
    runner.drain()
    assert runner.client.get_run(run_id).status is RunStatus.CANCELLED
    assert "double" not in engineflows.flows.CALLS


# -- 5. no re-drive storm under a backlog; a lost message is still re-driven ------------------


def test_queued_messages_are_not_redriven_and_a_lost_one_is(engineflows: Any) -> None:
    runner = InProcessRunner()
    runner.sweeper.redrive_after = timedelta(seconds=5)
    lost = WorkflowClient(runner.store, DroppingDispatcher(), clock=runner.clock).start(
        "basic", {"value": 1}
    )
    runner.clock.advance(1)
    queued = [runner.start("basic", {"value": i}) for i in range(20)]  # a backlog
    runner.clock.advance(60)  # everything is long overdue; nothing was consumed
    report = runner.sweeper.sweep_once()
    assert report.stalled_runs == 1  # the one not in the queue, and only that one
    resent = [m for m in runner.dispatcher.queue if isinstance(m, PassDispatch)][-1]
    assert resent.run_id == lost
    runner.clock.advance(60)
    assert runner.sweeper.sweep_once().total == 0  # its copy is queued now: balanced
    # A duplicate of an answered request costs a refused claim, not a replay.
    runner.drain()
    assert runner.engine.run_pass(queued[0], timer=False).value == "answered"


@pytest.mark.integration
def test_a_backlog_causes_few_redrives_and_a_lost_message_is_still_redriven(
    chaos_root: Path, tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """Many runs started at once on one worker: their messages wait in queues for many
    times WORKFLOW_REDRIVE_AFTER. Before, every such wait was taken for a loss. (Eager
    execution off: every step and pass goes through the broker, the most messages queued.)"""
    redrive = 1.0
    env = chaos_env(
        chaos_root, tmp_path,
        WORKFLOW_BROKER_URL=redis_url, WORKFLOW_DATABASE_URL=postgres_url,
        WORKFLOW_SWEEP_INTERVAL="250ms", WORKFLOW_REDRIVE_AFTER=f"{redrive}s",
        WORKFLOW_EAGER="off",
    )  # fmt: skip
    cluster = Cluster(tmp_path, env)
    try:
        lost = WorkflowClient(cluster.store, DroppingDispatcher()).start("chain", {"steps": 3})
        created = cluster.store.get_run(lost, steps=False)
        assert created is not None
        worker = cluster.worker(concurrency=2)
        runs = [cluster.client.start("chain", {"steps": 3}) for _ in range(150)]
        redriven_at = None
        deadline = time.monotonic() + 30
        while redriven_at is None:  # a re-drive bumps the request time, before any claim
            requested = _request_time(cluster.store, lost)
            if requested > created.created_at:
                redriven_at = requested
            assert time.monotonic() < deadline, "the lost run was never re-driven"
            time.sleep(0.02)
        for run_id in [lost, *runs]:
            run = cluster.client.wait_for_run(run_id, timeout=120)
            assert run.status is RunStatus.COMPLETED
        time.sleep(1)  # the last sweeps
        log = worker.log.read_text()
    finally:
        cluster.close()
    received = len(re.findall(r"Task \S+\[[0-9a-f-]+\] received", log))
    redrives = sum(
        int(n)
        for kind in ("stale_steps", "stalled_runs")
        for n in re.findall(rf"{kind}=(\d+)", log)
    )
    assert received > 150 * 7
    assert redrives / received < 0.10, (redrives, received)
    assert (redriven_at - created.created_at).total_seconds() < 2 * redrive + 0.5


def _request_time(store: RunStore, run_id: str) -> Any:
    import sqlalchemy as sa

    from orchestrator.store.sql import SqlStore
    from orchestrator.store.tables import runs

    assert isinstance(store, SqlStore)
    with store.engine.connect() as conn:
        return conn.execute(sa.select(runs.c.requested_at).where(runs.c.id == run_id)).scalar()


# -- 6. a dead pool child's step runs again at once -----------------------------------------


@pytest.mark.integration
def test_a_step_whose_pool_child_was_killed_runs_again_within_seconds(
    chaos_root: Path, tmp_path: Path, brokers: dict[str, str]
) -> None:
    # The default 30 s lease: recovery must not wait for it.
    env = chaos_env(chaos_root, tmp_path, WORKFLOW_STEP_LEASE="30s", **brokers)
    cluster = Cluster(tmp_path, env)
    try:
        cluster.worker(concurrency=2)
        run_id = cluster.client.start("chain", {"steps": 3, "slow_step": 1, "slow_seconds": 30})
        lines = lambda: ledger_lines(env["CHAOS_LEDGER"])  # noqa: E731
        wait_until(lambda: any(w[1:3] == ["work-1", "start"] for w in lines()), 30, "work-1")
        pid = int(next(w[4] for w in lines() if w[1:3] == ["work-1", "start"]))
        os.kill(pid, signal.SIGKILL)  # the child only: its worker's main process lives on
        killed = time.time()
        wait_until(
            lambda: any(w[1:4] == ["work-1", "start", "2"] for w in lines()), 30, "the re-run"
        )
        again = float(next(w[5] for w in lines() if w[1:4] == ["work-1", "start", "2"]))
        run = cluster.client.wait_for_run(run_id, timeout=60)
    finally:
        cluster.close()
    assert run.status is RunStatus.COMPLETED and [s.attempts for s in run.steps] == [1, 2, 1]
    gap = again - killed
    print(f"killed pool child: step ran again {gap:.2f}s later")
    assert gap < 8, gap  # it was the whole 30 s lease (typically 0.5 s on Redis, 2 s embedded)


# -- 7. SIGTERM to the whole process group, as systemd sends it ----------------------------


@pytest.mark.integration
def test_a_loaded_worker_stops_when_its_process_group_gets_sigterm(
    chaos_root: Path, tmp_path: Path
) -> None:
    env = chaos_env(chaos_root, tmp_path)  # embedded: where it was seen to hang
    cluster = Cluster(tmp_path, env)
    try:
        worker = cluster.worker(concurrency=2)
        for _ in range(40):
            cluster.client.start("fanned", {"steps": 4, "slow_seconds": 0.2})
        wait_until(lambda: len(ledger_lines(env["CHAOS_LEDGER"])) > 10, 30, "a loaded worker")
        assert worker.proc is not None
        stopping = time.monotonic()
        os.killpg(worker.proc.pid, signal.SIGTERM)
        try:
            worker.proc.wait(timeout=20)  # the steps take 0.2 s: a warm shutdown is quick
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit:\n{worker.log.read_text()[-3000:]}")
        took = time.monotonic() - stopping
    finally:
        cluster.close()
    print(f"worker exited {took:.1f}s after SIGTERM to its process group")


@pytest.mark.integration
def test_a_cold_shutdown_still_ends_a_long_step_at_once(chaos_root: Path, tmp_path: Path) -> None:
    """Children ignore SIGTERM outside a cold shutdown (above); in one, the pool's SIGTERM
    still ends a step that would run 30 s more."""
    env = chaos_env(chaos_root, tmp_path)
    cluster = Cluster(tmp_path, env)
    try:
        worker = cluster.worker(concurrency=2)
        cluster.client.start("chain", {"steps": 2, "slow_step": 0, "slow_seconds": 30})
        wait_until(lambda: ledger_lines(env["CHAOS_LEDGER"]) != [], 30, "the slow step")
        assert worker.proc is not None
        stopping = time.monotonic()
        worker.proc.send_signal(signal.SIGQUIT)
        worker.proc.wait(timeout=20)
        took = time.monotonic() - stopping
    finally:
        cluster.close()
    assert took < 15
