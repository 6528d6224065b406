"""Fan-out, events, retries, cancel/resume/fork, child workflows, idempotent start and
versioning, in-process with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.dispatch import PassDispatch, StepDispatch
from orchestrator.errors import RunFinishedError, RunNotFoundError
from orchestrator.models import RunStatus, StepKind, StepStatus
from orchestrator.testing import InProcessRunner


@pytest.fixture
def runner(engineflows: Any) -> InProcessRunner:
    engineflows.flows.CALLS.clear()
    engineflows.control.FLAKY.clear()
    return InProcessRunner()


def steps_sent(runner: InProcessRunner) -> list[str]:
    return [m.step for m in runner.dispatcher.sent if isinstance(m, StepDispatch)]


# -- fan-out -------------------------------------------------------------------------------


def test_gather_dispatches_every_unfinished_step_in_one_pass(runner: InProcessRunner) -> None:
    run_id = runner.start("fanout", {"values": [1, 2, 3]})
    runner.engine.run_pass(run_id)
    assert steps_sent(runner) == ["left", "right"]  # the inline one ran in the pass
    run = runner.client.get_run(run_id)
    assert run.waiting_for == "steps:left,right"
    assert run.step("local").status is StepStatus.SUCCEEDED
    runner.drain()
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"pair": [{"value": 2}, {"value": 4}, "inline"], "mapped": [2, 4, 6]}
    assert [s.name for s in run.steps][-3:] == ["each[0]", "each[1]", "each[2]"]


def test_map_keeps_at_most_max_concurrency_in_flight(runner: InProcessRunner) -> None:
    run_id = runner.start("fanout", {"values": [1, 2, 3, 4, 5], "limit": 2})
    in_flight_peak = 0
    while runner.dispatcher.queue:
        runner.drain(limit=1)
        run = runner.client.get_run(run_id)
        live = [
            s for s in run.steps
            if s.name.startswith("each") and s.status in (StepStatus.SCHEDULED, StepStatus.RUNNING)
        ]  # fmt: skip
        in_flight_peak = max(in_flight_peak, len(live))
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.output["mapped"] == [2, 4, 6, 8, 10]
    assert in_flight_peak == 2


@pytest.mark.parametrize(("fail_fast", "good_done"), [(False, True), (True, False)])
def test_a_failure_in_a_group_raises_after_it_settles_or_at_once(
    runner: InProcessRunner, fail_fast: bool, good_done: bool
) -> None:
    run_id = runner.start("fanout-failing", {"fail_fast": fail_fast})
    runner.engine.run_pass(run_id)  # dispatches both
    runner.dispatcher.queue.clear()
    runner.executor.execute(run_id, "bad", workflow="fanout-failing", rpc="control.broken")
    runner.drain()  # the pass after the failure; "good" is still in flight
    run = runner.client.get_run(run_id)
    if fail_fast:
        assert run.status is RunStatus.COMPLETED and run.output == "bad failed"
        return
    assert run.status is RunStatus.PAUSED and run.waiting_for == "step:good"
    runner.executor.execute(run_id, "good", workflow="fanout-failing", rpc="math.double")
    runner.drain()
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == "bad failed"
    assert run.step("good").status is StepStatus.SUCCEEDED


# -- events --------------------------------------------------------------------------------


def test_an_event_wakes_the_waiting_run(runner: InProcessRunner) -> None:
    run = runner.run("approval", {})
    assert (run.status, run.waiting_for) == (RunStatus.PAUSED, "event:approved")
    runner.client.send_event(run.id, "approved", {"by": "ana"})
    runner.drain()
    assert runner.client.get_run(run.id).waiting_for == "event:approved"  # the second wait
    runner.client.send_event(run.id, "approved", {"by": "bo"})
    runner.drain()
    run = runner.client.get_run(run.id)
    assert run.status is RunStatus.COMPLETED
    assert run.output == {"first": {"by": "ana"}, "second": {"by": "bo"}}
    assert [(s.name, s.kind) for s in run.steps][1:] == [
        ("approved", StepKind.EVENT),
        ("approved#1", StepKind.EVENT),
    ]


def test_an_event_sent_before_the_wait_is_kept(runner: InProcessRunner) -> None:
    run_id = runner.start("approval", {})
    runner.client.send_event(run_id, "approved", 1)
    runner.client.send_event(run_id, "approved", 2)
    runner.drain()
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == {"first": 1, "second": 2}


def test_a_wait_times_out_with_event_timeout(runner: InProcessRunner) -> None:
    run = runner.run("approval", {})
    runner.clock.advance(3601)
    assert runner.sweeper.sweep_once().due_timers == 1
    runner.drain()
    run = runner.client.get_run(run.id)
    assert run.status is RunStatus.COMPLETED and run.output == "timed out"
    timed_out = run.step("approved")
    assert timed_out.status is StepStatus.FAILED and timed_out.error is not None
    assert timed_out.error.type == "EventTimeout"


def test_events_to_finished_or_unknown_runs_are_clear_errors(runner: InProcessRunner) -> None:
    run = runner.run("fanout", {})
    with pytest.raises(RunFinishedError, match="has already completed"):
        runner.client.send_event(run.id, "approved", {})
    with pytest.raises(RunNotFoundError):
        runner.client.send_event("no-such-run", "approved", {})


# -- retries and error policies ------------------------------------------------------------


def test_retries_record_each_attempt_and_wait_without_a_worker(
    runner: InProcessRunner, engineflows: Any
) -> None:
    engineflows.control.FLAKY.update({"a": 2, "b": 5, "i": 1})
    run = runner.run("retrying", {})
    flaky = run.step("flaky")
    assert flaky.status is StepStatus.SCHEDULED and flaky.attempts == 1  # waiting out 2 s
    assert [e.type for e in flaky.errors] == ["ConnectionError"]
    # The wait is a message with an eta, not a worker sleeping.
    retry = [m for m in runner.dispatcher.queue if isinstance(m, StepDispatch)]
    assert [m.eta for m in retry] == [flaky.wake_at]
    run = runner.settle(run.id)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == ["a ok", None, None, "i ok"]
    steps = {s.name: s for s in run.steps}
    assert (steps["flaky"].attempts, len(steps["flaky"].errors)) == (3, 2)
    retried_at = [e for e in steps["flaky"].errors]
    assert all(e.type == "ConnectionError" for e in retried_at)
    assert (steps["defaulted"].status, steps["defaulted"].attempts) == (StepStatus.FAILED, 2)
    assert (steps["broken"].status, steps["broken"].attempts) == (StepStatus.FAILED, 1)
    inline = steps["inlineFlaky"]
    assert (inline.kind, inline.attempts, inline.status) == (
        StepKind.INLINE, 2, StepStatus.SUCCEEDED,
    )  # fmt: skip


def test_exponential_backoff_spaces_the_attempts(runner: InProcessRunner, engineflows: Any) -> None:
    engineflows.control.FLAKY.update({"a": 3})
    run = runner.settle(runner.start("retrying", {}), step=0.5)
    flaky = run.step("flaky")
    assert flaky.attempts == 4
    # 2 s, 4 s, 8 s between attempts (jitter 0): the last attempt started 14 s after the first.
    assert flaky.started_at is not None and flaky.created_at is not None
    assert 14 <= (flaky.started_at - flaky.created_at).total_seconds() < 16


# -- cancel, resume, fork ------------------------------------------------------------------


def test_cancel_stops_the_run_and_runs_finally_cleanup(
    runner: InProcessRunner, engineflows: Any
) -> None:
    run = runner.run("cancellable", {})
    assert run.waiting_for == "timer:long"
    runner.client.cancel_run(run.id, "customer asked")
    runner.drain()
    run = runner.client.get_run(run.id)
    assert run.status is RunStatus.CANCELLED
    assert run.error is not None and (run.error.type, run.error.message) == (
        "Cancelled", "customer asked",
    )  # fmt: skip
    assert run.step("cleanup").result == "cleaned"
    assert engineflows.flows.CALLS["cleanup"] == 1
    assert "never" not in [s.name for s in run.steps]
    with pytest.raises(RunFinishedError):
        runner.client.cancel_run(run.id)


def test_queued_steps_of_a_cancelled_run_become_no_ops(
    runner: InProcessRunner, engineflows: Any
) -> None:
    run_id = runner.start("cancellable", {})
    runner.engine.run_pass(run_id)  # "first" is queued
    runner.client.cancel_run(run_id)
    runner.drain()
    assert runner.client.get_run(run_id).status is RunStatus.CANCELLED
    assert "double" not in engineflows.flows.CALLS


def test_resume_continues_a_failed_run_without_rerunning_succeeded_steps(
    runner: InProcessRunner, engineflows: Any
) -> None:
    engineflows.control.FLAKY["resume"] = 1
    run = runner.run("resumable", {})
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.step == "second"
    runner.client.resume_run(run.id)
    runner.drain()
    run = runner.client.get_run(run.id)
    assert run.status is RunStatus.COMPLETED and run.output == [2, "resume ok"]
    assert engineflows.flows.CALLS["double"] == 1


def test_fork_reuses_results_before_the_given_step(
    runner: InProcessRunner, engineflows: Any
) -> None:
    run = runner.run("resumable", {})
    assert run.status is RunStatus.COMPLETED
    fork = runner.client.fork_run(run.id, from_step="second")
    runner.drain()
    forked = runner.client.get_run(fork.id)
    assert forked.status is RunStatus.COMPLETED and forked.output == run.output
    assert engineflows.flows.CALLS == {"double": 1, "flaky": 2}


# -- child workflows and idempotent start --------------------------------------------------


def test_a_child_workflow_returns_its_output_to_the_parent(runner: InProcessRunner) -> None:
    run = runner.run("parent", {"values": [1, 2]})
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"child": 6}
    kid = run.step("kid")
    child = runner.client.get_run(kid.input["run_id"])
    assert (child.workflow, child.parent_run_id, child.status) == (
        "child", run.id, RunStatus.COMPLETED,
    )  # fmt: skip


def test_a_failed_child_raises_in_the_parent(runner: InProcessRunner) -> None:
    run = runner.run("parent", {"values": [-5]})
    assert run.status is RunStatus.COMPLETED and run.output == "child failed: ChildWorkflowFailed"


def test_cancelling_the_parent_cancels_the_child(runner: InProcessRunner) -> None:
    run = runner.run("parent", {"values": [1], "limit": 99})  # the child sleeps an hour
    child_id = run.step("kid").input["run_id"]
    assert runner.client.get_run(child_id).waiting_for == "timer:rest"
    runner.client.cancel_run(run.id)
    runner.drain()
    assert runner.client.get_run(child_id).status is RunStatus.CANCELLED
    assert runner.client.get_run(run.id).status is RunStatus.CANCELLED


def test_starting_twice_with_one_key_returns_the_same_run(runner: InProcessRunner) -> None:
    first = runner.client.start("fanout", {}, idempotency_key="order-42")
    again = runner.client.start("fanout", {}, idempotency_key="order-42")
    other = runner.client.start("fanout", {}, idempotency_key="order-43")
    assert first == again != other
    assert runner.client.start("fanout", {}, run_id="mine") == "mine"
    assert runner.client.start("fanout", {}, run_id="mine") == "mine"
    assert len(runner.store.list_runs()) == 3


# -- versioning ----------------------------------------------------------------------------


def test_patched_takes_the_new_path_for_new_runs_only(runner: InProcessRunner) -> None:
    new = runner.run("versioned", {})
    assert new.status is RunStatus.COMPLETED and new.output == "new path"
    assert [s.kind for s in new.steps] == [StepKind.REMOTE, StepKind.MARKER, StepKind.REMOTE]
    # Old runs, recorded before the patch, replay the old path: see
    # tests/histories/versioned_before_patch.json.


def test_passes_are_not_sent_for_finished_children(runner: InProcessRunner) -> None:
    run = runner.run("parent", {"values": [1]})
    passes = [m for m in runner.dispatcher.sent if isinstance(m, PassDispatch)]
    assert all(m.run_id in (run.id, run.step("kid").input["run_id"]) for m in passes)


def test_a_cancelled_child_seen_first_still_ends_the_parent_cancelled(
    runner: InProcessRunner,
) -> None:
    """The cascade may reach the child before the parent: the parent then replays a failed
    child step before any cancellation point."""
    run = runner.run("parent", {"values": [1], "limit": 99})
    child_id = run.step("kid").input["run_id"]
    runner.client.cancel_run(run.id)
    runner.dispatcher.queue.clear()
    runner.engine.run_pass(child_id)  # the child first
    assert runner.client.get_run(child_id).status is RunStatus.CANCELLED
    assert runner.client.get_run(run.id).step("kid").status is StepStatus.WAITING
    runner.engine.run_pass(run.id)
    assert runner.client.get_run(run.id).status is RunStatus.CANCELLED


def test_a_step_over_its_timeout_fails_with_a_timeout_the_policy_retries(
    runner: InProcessRunner, engineflows: Any
) -> None:
    run = runner.settle(runner.start("timing-out", {}))
    assert run.status is RunStatus.COMPLETED and run.output == [None, None]
    remote, inline = run.step("slowRemote"), run.step("slowInline")
    assert remote.attempts == 2  # the timeout was retried once, then final
    assert [e.type for e in remote.errors] == ["StepTimeoutError", "StepTimeoutError"]
    assert inline.error is not None and inline.error.type == "StepTimeoutError"
    assert "took longer than 0.01s" in inline.error.message
