"""End to end with real `celery worker` processes, on Redis + PostgreSQL and on the embedded
default (SQLite state, `localfs://` broker)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    FAST_RECOVERY,
    REPO,
    Cluster,
    WorkerProcess,
    ledger,
    prebuild,
    prebuild_fixture,
    wait_for,
    worker_env,
)

from orchestrator.client import WorkflowClient
from orchestrator.config import Settings
from orchestrator.dispatch import PassDispatch
from orchestrator.manifest import installed
from orchestrator.models import RunStatus, StepStatus
from workers.routing import manifest_queues

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis+postgres", "rabbitmq+postgres", "embedded"])
def services_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Redis or RabbitMQ with PostgreSQL, or the embedded default: SQLite state and the
    `localfs://` broker under WORKFLOW_HOME, no server at all. Only the URLs differ."""
    home = str(tmp_path / "home")
    if request.param == "embedded":
        yield worker_env(WORKFLOW_HOME=home)
        return
    broker = request.getfixturevalue(request.param.split("+")[0] + "_url")
    env = worker_env(
        WORKFLOW_DATABASE_URL=request.getfixturevalue("postgres_url"),
        WORKFLOW_BROKER_URL=broker,
        WORKFLOW_HOME=home,
    )
    yield env
    if broker.startswith("amqp"):
        purge_rabbitmq(broker)


@pytest.fixture
def examples(services_env: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    import workflows  # noqa: F401  (the examples, prebuilt by the session fixture)

    cluster = Cluster(tmp_path, services_env)
    yield cluster
    cluster.close()


@pytest.fixture
def chaos(services_env: dict[str, str], chaos_root: Path, tmp_path: Path) -> Iterator[Cluster]:
    env = {
        **services_env,
        **FAST_RECOVERY,
        "PYTHONPATH": f"{chaos_root}:{services_env['PYTHONPATH']}",
        "WORKFLOW_PACKAGE": "chaosflows",
        "CHAOS_LEDGER": str(tmp_path / "ledger.txt"),
    }
    cluster = Cluster(tmp_path, env)
    yield cluster
    cluster.close()


def purge_rabbitmq(url: str) -> None:
    """RabbitMQ keeps durable queues between tests: leave no messages for the next one."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(url) as conn:
        channel = conn.channel()
        for queue in manifest_queues(installed(), Settings.from_env({})):
            try:
                channel.queue_purge(queue)
            except NotFound:  # never declared; the error closed the channel
                channel = conn.channel()


def test_examples_end_to_end(examples: Cluster) -> None:
    examples.worker()
    start = examples.client.start
    onboarding = start("onboarding", {"email": "ada@example.eu", "simulate_busy_provider": True})
    order = {"order_id": "o-1", "sku": "BOOK", "quantity": 1, "amount_cents": 999}
    paid = start("order", {**order, "card": "4242424242424242"})
    flaky_gateway = start("order", {**order, "order_id": "o-2", "card": "4000000000000119"})
    declined = start("order", {**order, "order_id": "o-3", "card": "4000000000000002"})
    large = start("order", {**order, "order_id": "o-4", "amount_cents": 500_000,
                            "card": "4242424242424242"})  # fmt: skip

    run = wait_for(examples, onboarding)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output["tax_rate"] == 0.2 and run.output["user_id"].startswith("u_")
    assert run.output["workspace"] == f"ws-{run.output['user_id']}"
    assert [(s.name, s.kind.value, s.status.value, s.attempts) for s in run.steps] == [
        ("createUser", "remote", "succeeded", 1),
        ("calcTax", "inline", "succeeded", 1),
        ("createWorkspace", "remote", "succeeded", 1),
        ("subscribeNewsletter", "remote", "succeeded", 1),
        ("cooldown", "sleep", "succeeded", 0),
        ("sendEmail", "remote", "succeeded", 2),  # the provider was busy once: retried
    ]
    assert [e.type for e in run.step("sendEmail").errors] == ["ProviderBusy"]
    cooldown = run.step("cooldown")
    assert cooldown.duration_s is not None and cooldown.duration_s >= 2

    run = wait_for(examples, paid)
    assert run.status is RunStatus.COMPLETED
    assert run.output == {"charge_id": "ch-o-1", "tracking": "TRACK-o-1"}

    run = wait_for(examples, flaky_gateway)
    assert run.status is RunStatus.COMPLETED and run.step("chargeCard").attempts == 2

    run = wait_for(examples, declined)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.step == "chargeCard"
    assert "PaymentDeclined: card declined" in run.error.message
    assert [s.name for s in run.steps] == ["reserveStock", "chargeCard", "releaseStock"]
    assert run.step("chargeCard").attempts == 1  # non-retryable
    assert run.step("releaseStock").status is StepStatus.SUCCEEDED

    deadline = time.monotonic() + 30
    while examples.client.get_run(large).waiting_for != "event:approval":
        assert time.monotonic() < deadline, examples.logs()
        time.sleep(0.05)
    examples.client.send_event(large, "approval", {"approved": False, "by": "ops"})
    run = wait_for(examples, large)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert "rejected by ops" in run.error.message
    assert run.step("releaseStock").status is StepStatus.SUCCEEDED


def test_cli_starts_and_shows_runs(examples: Cluster) -> None:
    examples.worker()
    cli = [sys.executable, "-m", "orchestrator"]
    started = subprocess.run(
        [*cli, "start", "onboarding", "--input", '{"email": "cli@example.com"}', "--wait"],
        env=examples.env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "status    completed" in started.stdout
    assert "createUser" in started.stdout and "rpc users.create" in started.stdout
    listed = subprocess.run(
        [*cli, "runs", "list", "--workflow", "onboarding", "--json"],
        env=examples.env, cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    runs = json.loads(listed.stdout)
    assert [r["status"] for r in runs] == ["completed"]
    shown = subprocess.run(
        [*cli, "runs", "show", runs[0]["id"]],
        env=examples.env, cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert shown.returncode == 0 and "sendEmail" in shown.stdout
    bad = subprocess.run(
        [*cli, "start", "onboarding", "--input", '{"mail": 1}'],
        env=examples.env, cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2 and "email" in bad.stderr and "Field required" in bad.stderr
    assert len(examples.client.list_runs()) == 1  # the invalid start stored nothing


def test_sigkill_mid_step_loses_no_run_and_records_every_step_once(chaos: Cluster) -> None:
    first = chaos.worker(concurrency=1)
    run_id = chaos.client.start("chain", {"steps": 3, "slow_step": 1, "slow_seconds": 30})
    deadline = time.monotonic() + 30
    while ledger(chaos)[("work-1", "start")] == 0:
        assert time.monotonic() < deadline, chaos.logs()
        time.sleep(0.05)
    first.kill()  # mid-step: work-1 has started and will never end in this worker
    # With Redis, the message the dead worker held comes back only after the visibility
    # timeout (1 h); the embedded broker never returns it. The step's lease lapses in seconds
    # and the sweeper re-drives it.
    restarted = time.monotonic()
    chaos.worker(concurrency=1)
    run = wait_for(chaos, run_id, timeout=120)
    assert time.monotonic() - restarted < 60
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"total": 6.0}
    assert [(s.name, s.status.value) for s in run.steps] == [
        ("work-0", "succeeded"),
        ("work-1", "succeeded"),
        ("work-2", "succeeded"),
    ]
    assert [s.attempts for s in run.steps] == [1, 2, 1]
    seen = ledger(chaos)
    # Side effects: the killed attempt started but never ended; every step ended exactly once.
    assert seen[("work-1", "start")] == 2
    assert [seen[(f"work-{i}", "end")] for i in range(3)] == [1, 1, 1]


def test_racing_orchestrator_passes_never_schedule_a_step_twice(chaos: Cluster) -> None:
    chaos.worker(concurrency=2)
    chaos.worker(concurrency=2)
    run_ids = [chaos.client.start("chain", {"steps": 6}) for _ in range(3)]
    # Flood every run with duplicate orchestrator messages while it progresses: four worker
    # processes run passes of the same run at the same moment.
    for _ in range(10):
        chaos.client.dispatcher.dispatch(
            [PassDispatch(r, "chain") for r in run_ids for _ in range(4)]
        )
        time.sleep(0.02)
    runs = [wait_for(chaos, r) for r in run_ids]
    assert all(r.status is RunStatus.COMPLETED for r in runs), [r.error for r in runs]
    assert all(s.attempts == 1 for r in runs for s in r.steps)
    seen = ledger(chaos)
    for i in range(6):
        assert seen[(f"work-{i}", "start")] == 3  # once per run
        assert seen[(f"work-{i}", "end")] == 3


def test_a_durable_sleep_survives_its_worker_being_killed(chaos: Cluster) -> None:
    first = chaos.worker(concurrency=1)
    run_id = chaos.client.start("napper", {})
    deadline = time.monotonic() + 30
    while chaos.client.get_run(run_id).waiting_for != "timer:nap":
        assert time.monotonic() < deadline, chaos.logs()
        time.sleep(0.05)
    # The wake-up (a countdown message) may be held by this worker: kill it with the timer.
    first.kill()
    chaos.worker(concurrency=1)
    run = wait_for(chaos, run_id, timeout=60)
    assert run.status is RunStatus.COMPLETED, run.error
    nap = run.step("nap")
    assert nap.completed_at is not None and nap.wake_at is not None
    assert nap.completed_at >= nap.wake_at
    # Woken by the new worker's sweeper soon after it was due, not an hour later.
    assert (nap.completed_at - nap.wake_at).total_seconds() < 15
    assert [ledger(chaos)[(name, "end")] for name in ("before", "after")] == [1, 1]


# -- issue 3 on real workers ---------------------------------------------------------------


def intervals(cluster: Cluster, prefix: str) -> list[tuple[float, float]]:
    path = Path(cluster.env["CHAOS_LEDGER"])
    starts: dict[str, float] = {}
    spans = []
    for line in path.read_text().splitlines():
        _, step, event, _, _, at = line.split()
        if step.startswith(prefix):
            if event == "start":
                starts[step] = float(at)
            else:
                spans.append((starts[step], float(at)))
    return spans


def test_map_runs_in_parallel_within_its_concurrency_limit(chaos: Cluster) -> None:
    chaos.worker(concurrency=2)
    chaos.worker(concurrency=2)
    run = wait_for(chaos, chaos.client.start("fanned", {"steps": 6, "slow_seconds": 0.4}))
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    spans = intervals(chaos, "fan[")
    peak = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert peak == 2  # four worker processes, but never more than two in flight


def test_long_timers_are_woken_by_the_sweeper_not_a_countdown(
    chaos: Cluster,
) -> None:
    chaos.env["WORKFLOW_MAX_COUNTDOWN"] = "1s"  # the 3 s nap gets no countdown message
    chaos.worker()
    run = wait_for(chaos, chaos.client.start("napper", {}))
    assert run.status is RunStatus.COMPLETED
    nap = run.step("nap")
    assert nap.completed_at is not None and nap.wake_at is not None
    assert 0 <= (nap.completed_at - nap.wake_at).total_seconds() < 5


class DroppingDispatcher:
    """A broker that accepts nothing: what a crash between commit and publish looks like."""

    def dispatch(self, messages: object) -> None:
        raise ConnectionError("broker unreachable")


def test_runs_and_steps_whose_messages_never_reached_the_broker_are_redriven(
    chaos: Cluster,
) -> None:
    from orchestrator.engine import Engine

    lost = WorkflowClient(chaos.store, DroppingDispatcher())
    never_started = lost.start("chain", {"steps": 2})
    half_started = lost.start("chain", {"steps": 2})
    Engine(chaos.store, DroppingDispatcher()).run_pass(half_started)  # step 0: outbox only
    assert chaos.client.get_run(half_started).step("work-0").status is StepStatus.SCHEDULED
    chaos.worker()  # its sweeper finds both after WORKFLOW_REDRIVE_AFTER (5 s)
    for run_id in (never_started, half_started):
        run = wait_for(chaos, run_id)
        assert run.status is RunStatus.COMPLETED and run.output == {"total": 2.0}


def test_child_workflows_events_and_cancel_with_cleanup(chaos: Cluster) -> None:
    chaos.worker()
    finished = chaos.client.start("family", {})
    deadline = time.monotonic() + 30
    while chaos.client.get_run(finished).waiting_for != "child:kid":
        assert time.monotonic() < deadline, chaos.logs()
        time.sleep(0.05)
    chaos.client.send_event(finished, "go", {"early": True})  # kept until the wait
    run = wait_for(chaos, finished)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"kid": {"value": 4.0}, "go": {"early": True}}
    assert run.step("cleanup").result == "cleaned"

    cancelled = chaos.client.start("family", {})
    while chaos.client.get_run(cancelled).waiting_for != "child:kid":
        time.sleep(0.05)
    child_id = chaos.client.get_run(cancelled).step("kid").input["run_id"]
    chaos.client.cancel_run(cancelled, "changed our mind")
    run = wait_for(chaos, cancelled)
    assert run.status is RunStatus.CANCELLED and run.error is not None
    assert run.error.message == "changed our mind"
    assert run.step("cleanup").result == "cleaned"  # the finally block ran inline
    assert wait_for(chaos, child_id).status is RunStatus.CANCELLED


def test_resume_and_fork(chaos: Cluster) -> None:
    chaos.env["CHAOS_GATE"] = str(Path(chaos.env["CHAOS_LEDGER"]).with_name("gate"))
    chaos.worker()
    run = wait_for(chaos, chaos.client.start("gate", {}))
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.step == "gated"
    Path(chaos.env["CHAOS_GATE"]).touch()  # the operator fixes the cause...
    chaos.client.resume_run(run.id)  # ...and resumes
    run = wait_for(chaos, run.id)
    assert run.status is RunStatus.COMPLETED and run.output == "through"
    assert ledger(chaos)[("before", "end")] == 1  # succeeded steps were not run again

    fork = chaos.client.fork_run(run.id, from_step="gated")
    forked = wait_for(chaos, fork.id)
    assert forked.status is RunStatus.COMPLETED and forked.output == "through"
    assert ledger(chaos)[("before", "end")] == 1 and ledger(chaos)[("gated", "end")] == 2


def test_starting_with_one_idempotency_key_twice_gives_one_run(chaos: Cluster) -> None:
    chaos.worker()
    first = chaos.client.start("chain", {"steps": 1}, idempotency_key="invoice-7")
    second = chaos.client.start("chain", {"steps": 1}, idempotency_key="invoice-7")
    assert first == second
    assert wait_for(chaos, first).status is RunStatus.COMPLETED
    assert len(chaos.client.list_runs(workflow="chain")) == 1


V2_PATCHED = """
@workflow("evolving")
def evolving(ctx: WorkflowContext, data: dict[str, str]) -> list[str]:
    out = [ctx.do("a", note, {"text": "a"})]
    ctx.sleep("pause", "1s")
    if ctx.patched("use-c"):
        out.append(ctx.do("c", note, {"text": "c"}))
    else:
        out.append(ctx.do("b", note, {"text": "b"}))
    ctx.sleep("settle", "3s")
    return out
"""

V3_UNPATCHED = """
@workflow("evolving")
def evolving(ctx: WorkflowContext, data: dict[str, str]) -> list[str]:
    out = [ctx.do("a", note, {"text": "a"})]
    out.append(ctx.do("c", note, {"text": "c"}))  # moved before the pause, without a patch
    ctx.sleep("pause", "1s")
    ctx.sleep("settle", "3s")
    return out
"""


def test_code_changed_under_a_live_run_replays_safely(
    services_env: dict[str, str], tmp_path: Path
) -> None:
    """A deploy between passes: `ctx.patched` keeps runs whose history went past the patch
    point on their old path (runs that had not got there take the new one: nothing of the
    old path ran yet), and a change that breaks a recorded history fails that run with
    NonDeterminismError."""
    root = prebuild_fixture("evolving", tmp_path / "evolving")
    source = root / "evolving" / "flow.py"
    v1 = source.read_text()
    env = {**services_env, "PYTHONPATH": f"{root}:{services_env['PYTHONPATH']}",
           "WORKFLOW_PACKAGE": "evolving"}  # fmt: skip
    cli = [sys.executable, "-m", "orchestrator"]

    def deploy(body: str) -> None:
        source.write_text(v1[: v1.index('@workflow("evolving")')] + body.lstrip())
        prebuild(root, "evolving")

    def start() -> str:
        done = subprocess.run([*cli, "start", "evolving", "--input", "{}"], env=env, cwd=REPO,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout.strip()

    def run_json(run_id: str) -> dict[str, Any]:
        shown = subprocess.run([*cli, "runs", "show", run_id, "--json"], env=env, cwd=REPO,
                               capture_output=True, text=True, check=True)  # fmt: skip
        data: dict[str, Any] = json.loads(shown.stdout)
        return data

    def wait(run_id: str, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not predicate(run := run_json(run_id)):
            assert time.monotonic() < deadline, run
            time.sleep(0.2)
        return run

    started: list[WorkerProcess] = []

    def worker(name: str) -> WorkerProcess:
        started.append(WorkerProcess(env, tmp_path / f"{name}.log", name=name, cwd=REPO))
        return started[-1].start()

    try:
        deploys_under_live_runs(worker, deploy, start, wait)
    finally:
        for w in started:
            if w.proc is not None and w.proc.poll() is None:
                w.kill()


def deploys_under_live_runs(worker: Any, deploy: Any, start: Any, wait: Any) -> None:
    import re

    w1 = worker("v1")
    old = start()
    wait(old, lambda r: r["waiting_for"] == "timer:settle")  # past the patch point: b ran
    w1.stop()
    deploy(V2_PATCHED)
    w2 = worker("v2")
    new = start()
    finished = wait(old, lambda r: r["status"] in ("completed", "failed"))
    assert (finished["status"], finished["output"]) == ("completed", ["a", "b"])
    fresh = wait(new, lambda r: r["status"] in ("completed", "failed"))
    assert (fresh["status"], fresh["output"]) == ("completed", ["a", "c"])
    assert [s["kind"] for s in fresh["steps"]] == ["remote", "sleep", "marker", "remote", "sleep"]
    assert finished["version"] != fresh["version"]  # the step graph changed

    broken = start()
    wait(broken, lambda r: r["waiting_for"] == "timer:settle")
    # This time a crash-style deploy: a warm shutdown could run the due timer under v2 first.
    w2.kill()
    deploy(V3_UNPATCHED)
    worker("v3")
    failed = wait(broken, lambda r: r["status"] in ("completed", "failed"))
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "NonDeterminismError"
    assert re.search(r"history has sleep step 'pause', .* reaches remote step 'c'",
                     failed["error"]["message"])  # fmt: skip


def test_a_step_timeout_interrupts_the_attempt_and_is_retried(chaos: Cluster) -> None:
    chaos.worker()
    started = time.monotonic()
    run = wait_for(chaos, chaos.client.start("deadline", {}))
    assert run.status is RunStatus.COMPLETED, run.error
    assert time.monotonic() - started < 8  # not the 10 s the first attempt wanted
    slow = run.step("slow")
    assert slow.attempts == 2 and [e.type for e in slow.errors] == ["StepTimeoutError"]
    assert ledger(chaos)[("slow", "end")] == 1  # the interrupted attempt never finished
