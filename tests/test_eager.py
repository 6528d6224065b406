"""Eager execution in process: the same outcomes as through the broker, fewer messages, and
the limits that keep it fair (a budget per received message, fan-outs and timers through the
broker, claimed work left to its lease if a delivery fails)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.dispatch import PassDispatch, StepDispatch
from orchestrator.eager import EagerDispatcher
from orchestrator.models import Run, RunStatus
from orchestrator.testing import InProcessRunner

CASES = [
    ("basic", {"value": 5}),
    ("looping", {"value": 3}),
    ("fanout", {"values": [1, 2, 3], "limit": 2}),
    ("catching", {"value": 1}),
    ("uncaught", {"value": 1}),
    ("retrying", {}),
    ("parent", {}),
]


def outcome(run: Run) -> tuple[Any, ...]:
    return (
        run.status,
        run.output,
        run.error.type if run.error else None,
        [(s.name, s.kind, s.status, s.attempts, s.result) for s in run.steps],
    )


@pytest.mark.parametrize(("workflow", "data"), CASES)
def test_eager_runs_end_as_runs_through_the_broker(
    engineflows: Any, workflow: str, data: dict[str, Any]
) -> None:
    outcomes = []
    for eager in (False, True):
        engineflows.flows.CALLS.clear()
        engineflows.control.FLAKY.update({"a": 2, "b": 5, "i": 1})
        runner = InProcessRunner(eager=eager)
        run = runner.client.get_run(runner.start(workflow, data))
        run = runner.settle(run.id)
        outcomes.append((outcome(run), dict(engineflows.flows.CALLS)))
    assert outcomes[0] == outcomes[1]


def test_a_sequential_workflow_needs_no_message_after_the_first(engineflows: Any) -> None:
    runner = InProcessRunner(eager=True)
    run = runner.run("looping", {"value": 3})
    assert run.status is RunStatus.COMPLETED and run.output == [0, 10, 20, 0, 2]
    # The start's pass message and nothing else: each step and pass was kept in process.
    assert [type(m).__name__ for m in runner.dispatcher.sent] == ["PassDispatch"]


def test_the_budget_hands_the_rest_to_the_broker(engineflows: Any) -> None:
    runner = InProcessRunner(eager=True)
    assert runner.eager is not None
    runner.eager.max_steps = 2
    run_id = runner.start("looping", {"value": 1})
    runner.drain(limit=1)  # one received message: two deliveries kept, then the broker
    assert runner.client.get_run(run_id).status is not RunStatus.COMPLETED
    assert [type(m).__name__ for m in runner.dispatcher.queue] in (
        ["PassDispatch"],
        ["StepDispatch"],
    )
    runner.drain()
    assert runner.client.get_run(run_id).status is RunStatus.COMPLETED


def test_only_one_branch_of_a_fan_out_stays_here(engineflows: Any) -> None:
    runner = InProcessRunner(eager=True)
    run_id = runner.start("fanout", {"values": [1, 2, 3, 4]})
    runner.drain(limit=1)
    sent_steps = [m.step for m in runner.dispatcher.sent if isinstance(m, StepDispatch)]
    # The gather schedules left and right together: left stays, right goes to the broker.
    assert sent_steps == ["right"]
    runner.drain()
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.output["mapped"] == [2, 4, 6, 8]


def test_timers_and_steps_with_a_timeout_go_through_the_broker() -> None:
    sent: list[Any] = []

    class Broker:
        def dispatch(self, messages: list[Any]) -> None:
            sent.extend(messages)

    eager = EagerDispatcher(Broker(), lambda _: True)
    timed = StepDispatch("r", "s", "t", "w", timeout=5.0)
    timer = PassDispatch("r", "w", eta=InProcessRunner().clock())
    plain = PassDispatch("r", "w")

    def work() -> None:
        assert not eager.takes(timed) and not eager.takes(timer) and eager.takes(plain)
        eager.dispatch([timed, timer])

    delivered: list[Any] = []
    eager.run(work, delivered.append)
    assert sent == [timed, timer] and delivered == []
    assert not eager.takes(plain)  # outside a received message: nothing stays


def test_a_failing_delivery_sends_what_it_had_not_claimed(engineflows: Any) -> None:
    sent: list[Any] = []

    class Broker:
        def dispatch(self, messages: list[Any]) -> None:
            sent.extend(messages)

    eager = EagerDispatcher(Broker(), lambda _: True)
    follow_up = PassDispatch("r", "w")

    def work() -> None:
        eager.dispatch([follow_up])

    def deliver(item: Any) -> None:
        raise ConnectionError("store down mid-chain")

    with pytest.raises(ConnectionError):
        eager.run(work, deliver)
    assert sent == []  # it was being delivered: its request is in the store, the sweeper's


@pytest.mark.integration
def test_a_step_whose_queue_this_worker_does_not_serve_goes_through_the_broker(
    chaos_root: Any, tmp_path: Any
) -> None:
    """-Q keeps its meaning under eager execution: passes run on the worker that serves the
    orchestrator queue, the steps on the one that serves theirs."""
    from harness import Cluster, worker_env

    from orchestrator.config import Settings
    from orchestrator.manifest import Manifest
    from workers.routing import manifest_queues

    env = worker_env(
        PYTHONPATH=str(chaos_root), WORKFLOW_PACKAGE="chaosflows", WORKFLOW_EAGER="on",
        WORKFLOW_HOME=str(tmp_path / "home"), CHAOS_LEDGER=str(tmp_path / "ledger.txt"),
    )  # fmt: skip
    step_queue = "wf.chain.work-{i}"
    manifest = Manifest.load(chaos_root / "chaosflows" / "_manifest.json")
    others = [q for q in manifest_queues(manifest, Settings.from_env(env)) if q != step_queue]
    cluster = Cluster(tmp_path, env)
    try:
        passes = cluster.worker(concurrency=1, queues=",".join(others))
        steps = cluster.worker(concurrency=1, queues=step_queue)
        run = cluster.client.wait_for_run(cluster.client.start("chain", {"steps": 3}), timeout=60)
    finally:
        cluster.close()
    assert run.status is RunStatus.COMPLETED
    ran_steps = {line.split()[4] for line in (tmp_path / "ledger.txt").read_text().splitlines()}
    assert len(ran_steps) == 1  # one process ran all three steps: the step worker's child
    assert "Task wf.chain.work-{i}[" not in passes.log.read_text()
    assert "Task wf.chain.orchestrator[" not in steps.log.read_text()
