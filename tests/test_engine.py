"""The replay engine, in-process: memory store, local dispatcher, fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.dispatch import PassDispatch, StepDispatch
from orchestrator.errors import StaleBuildError
from orchestrator.manifest import installed
from orchestrator.models import RunStatus, StepKind, StepStatus
from orchestrator.testing import InProcessRunner


@pytest.fixture
def runner(engineflows: Any) -> InProcessRunner:
    engineflows.flows.CALLS.clear()
    return InProcessRunner()


def test_remote_inline_and_sleep_steps_replay_to_completion(
    runner: InProcessRunner, engineflows: Any
) -> None:
    run = runner.run("basic", {"value": 5})
    assert (run.status, run.waiting_for) == (RunStatus.PAUSED, "timer:nap")
    assert [(s.name, s.kind, s.status) for s in run.steps] == [
        ("double", StepKind.REMOTE, StepStatus.SUCCEEDED),
        ("plusOne", StepKind.INLINE, StepStatus.SUCCEEDED),
        ("nap", StepKind.SLEEP, StepStatus.SLEEPING),
    ]
    runner.advance(9)
    assert runner.client.get_run(run.id).status is RunStatus.PAUSED  # not due yet
    runner.advance(1)
    run = runner.client.get_run(run.id)
    assert run.status is RunStatus.COMPLETED
    assert run.output == {"result": 22}
    # Each step ran once although the workflow replayed from the top on every pass.
    assert engineflows.flows.CALLS == {"double": 2, "plusOne": 1}
    assert [s.attempts for s in run.steps] == [1, 1, 0, 1]
    assert run.version == installed().workflows["basic"].version


def test_a_pass_schedules_only_the_first_unfinished_step(runner: InProcessRunner) -> None:
    run_id = runner.start("basic", {"value": 1})
    runner.engine.run_pass(run_id)
    sent = [m for m in runner.dispatcher.sent if isinstance(m, StepDispatch)]
    assert [(m.step, m.task) for m in sent] == [("double", "wf.basic.double")]
    run = runner.client.get_run(run_id)
    assert (run.status, run.waiting_for) == (RunStatus.PAUSED, "step:double")


def test_duplicate_orchestrator_messages_schedule_nothing_twice(runner: InProcessRunner) -> None:
    run_id = runner.start("basic", {"value": 1})
    for _ in range(5):
        runner.engine.run_pass(run_id)
    steps = [m for m in runner.dispatcher.sent if isinstance(m, StepDispatch)]
    assert len(steps) == 1


def test_duplicate_step_messages_run_the_step_once(
    runner: InProcessRunner, engineflows: Any
) -> None:
    run_id = runner.start("basic", {"value": 1})
    runner.engine.run_pass(run_id)
    for _ in range(3):
        runner.executor.execute(run_id, "double", workflow="basic", rpc="math.double")
    assert engineflows.flows.CALLS == {"double": 1}
    step = runner.client.get_run(run_id).step("double")
    assert (step.status, step.attempts, step.result) == (StepStatus.SUCCEEDED, 1, {"value": 2})


def test_a_failed_step_can_be_caught_on_every_replay(runner: InProcessRunner) -> None:
    run = runner.run("catching", {"value": 0})
    assert run.status is RunStatus.COMPLETED
    assert run.output == {"caught": "boom:LookupError:no such thing"}
    boom = run.step("boom")
    assert boom.status is StepStatus.FAILED and boom.error is not None
    assert boom.error.type == "LookupError" and "Traceback" in (boom.error.traceback or "")


def test_an_uncaught_step_failure_fails_the_run_naming_the_step(runner: InProcessRunner) -> None:
    run = runner.run("uncaught", {"value": 0})
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.step) == ("StepFailedError", "boom")
    assert "LookupError: bad" in run.error.message
    assert run.completed_at is not None


def test_except_exception_cannot_swallow_the_pause(runner: InProcessRunner) -> None:
    run = runner.run("swallower", {"value": 0})
    assert run.status is RunStatus.COMPLETED
    assert run.output == "done"


def test_repeated_step_names_get_ordinal_suffixes(runner: InProcessRunner) -> None:
    run = runner.run("looping", {"value": 3})
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == [0, 10, 20, 0, 2]
    assert [s.name for s in run.steps] == ["tick", "tick#1", "tick#2", "item-0", "item-1"]
    dispatched = [m.task for m in runner.dispatcher.sent if isinstance(m, StepDispatch)]
    assert dispatched == ["wf.looping.item-{i}", "wf.looping.item-{i}"]


def test_a_non_serializable_remote_result_fails_the_step_clearly(runner: InProcessRunner) -> None:
    run = runner.run("opaque", {"value": 0})
    assert run.status is RunStatus.FAILED
    step = run.step("opaque")
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.type == "SerializationError"
    assert "result of step 'opaque' is not JSON-serializable (object)" in step.error.message


def test_a_non_serializable_inline_result_fails_the_step(runner: InProcessRunner) -> None:
    run = runner.run("inline-opaque", {"value": 0})
    assert run.status is RunStatus.FAILED
    assert run.step("makeObject").error is not None
    assert run.error is not None and run.error.step == "makeObject"


def test_a_non_serializable_output_fails_the_run(runner: InProcessRunner) -> None:
    run = runner.run("bad-output", {"value": 0})
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.type == "SerializationError"
    assert "output of workflow 'bad-output'" in run.error.message


def test_invalid_input_raises_and_stores_nothing(runner: InProcessRunner) -> None:
    with pytest.raises(ValidationError):
        runner.start("basic", {"value": "not a number"})
    assert runner.store.list_runs() == []
    assert runner.dispatcher.sent == []


def test_an_early_timer_pass_pauses_again(runner: InProcessRunner) -> None:
    run = runner.run("basic", {"value": 1})
    runner.engine.run_pass(run.id)  # a stray early message
    run = runner.client.get_run(run.id)
    assert (run.status, run.waiting_for) == (RunStatus.PAUSED, "timer:nap")
    timers = [m for m in runner.dispatcher.sent if isinstance(m, PassDispatch) and m.eta]
    assert timers and all(m.eta == run.step("nap").wake_at for m in timers)


def test_long_timers_are_left_to_the_sweeper(runner: InProcessRunner) -> None:
    runner.engine.max_countdown = runner.engine.max_countdown.__class__(seconds=5)
    run = runner.run("basic", {"value": 1})
    assert not [m for m in runner.dispatcher.queue if isinstance(m, PassDispatch) and m.eta]
    runner.clock.advance(11)
    assert runner.sweeper.sweep_once().due_timers == 1
    runner.drain()
    assert runner.client.get_run(run.id).status is RunStatus.COMPLETED


def test_a_lost_step_message_is_redriven(runner: InProcessRunner) -> None:
    run_id = runner.start("basic", {"value": 1})
    runner.engine.run_pass(run_id)
    runner.dispatcher.queue.clear()  # the broker lost everything
    runner.clock.advance(31)
    report = runner.sweeper.sweep_once()
    assert report.stale_steps == 1
    runner.drain()
    assert runner.client.get_run(run_id).step("double").status is StepStatus.SUCCEEDED


def test_a_lost_first_pass_is_redriven(runner: InProcessRunner) -> None:
    run_id = runner.start("basic", {"value": 1})
    runner.dispatcher.queue.clear()
    assert runner.sweeper.sweep_once().stalled_runs == 0  # not yet overdue
    runner.clock.advance(31)
    assert runner.sweeper.sweep_once().stalled_runs == 1
    runner.drain()
    assert runner.client.get_run(run_id).status is RunStatus.PAUSED


def test_a_step_whose_worker_died_is_reclaimed_after_its_lease(
    runner: InProcessRunner, engineflows: Any
) -> None:
    run_id = runner.start("basic", {"value": 1})
    runner.engine.run_pass(run_id)
    runner.dispatcher.queue.clear()
    now, lease = runner.clock(), runner.executor.lease
    assert runner.store.claim_step(run_id, "double", "dead-worker", now, now + lease)
    runner.clock.advance(runner.executor.lease.total_seconds() + 1)
    assert runner.sweeper.sweep_once().lapsed_steps == 1
    runner.drain()
    step = runner.client.get_run(run_id).step("double")
    assert (step.status, step.attempts) == (StepStatus.SUCCEEDED, 2)


def test_a_result_arriving_mid_pass_triggers_another_pass(runner: InProcessRunner) -> None:
    run_id = runner.start("basic", {"value": 1})
    runner.engine.run_pass(run_id)
    runner.dispatcher.queue.clear()
    real_commit = runner.store.commit_pass

    def commit_after_step_finishes(*args: Any, **kwargs: Any) -> bool:
        if kwargs.get("release") is not None:
            # The step finishes while this pass is still running.
            runner.executor.execute(run_id, "double", workflow="basic", rpc="math.double")
            runner.dispatcher.queue.clear()  # and its own wake-up message is lost
        return real_commit(*args, **kwargs)

    runner.store.commit_pass = commit_after_step_finishes  # type: ignore[method-assign]
    runner.engine.run_pass(run_id)
    runner.store.commit_pass = real_commit  # type: ignore[method-assign]
    assert [type(m) for m in runner.dispatcher.queue] == [PassDispatch]
    runner.drain()
    assert runner.client.get_run(run_id).step("plusOne").status is StepStatus.SUCCEEDED


def test_a_step_the_prebuild_did_not_see_is_a_stale_build(
    runner: InProcessRunner, engineflows: Any
) -> None:
    manifest = installed()
    basic = manifest.workflows["basic"]
    trimmed = basic.model_copy(update={"steps": basic.steps[:1]})
    try:
        manifest.workflows["basic"] = trimmed
        run = runner.run("basic", {"value": 1})
    finally:
        manifest.workflows["basic"] = basic
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "StaleBuildError"
    assert "step 'plusOne'" in run.error.message
    assert "run `python -m codegen prebuild`" in run.error.message


def test_an_edited_source_is_a_stale_build_at_start(
    runner: InProcessRunner, engineflows: Any
) -> None:
    definition = runner.client.registry.workflow("basic")
    original = definition.source_sha256
    definition.source_sha256 = "0" * 64
    try:
        with pytest.raises(StaleBuildError, match="changed since the prebuild"):
            runner.start("basic", {"value": 1})
    finally:
        definition.source_sha256 = original
    assert runner.store.list_runs() == []


def test_a_call_site_read_differently_by_the_prebuild_names_the_cause(
    runner: InProcessRunner, engineflows: Any
) -> None:
    manifest = installed()
    basic = manifest.workflows["basic"]
    as_inline = [s.model_copy(update={"kind": "inline"}) if s.name == "double" else s
                 for s in basic.steps]  # fmt: skip
    try:
        manifest.workflows["basic"] = basic.model_copy(update={"steps": tuple(as_inline)})
        run = runner.run("basic", {"value": 1})
    finally:
        manifest.workflows["basic"] = basic
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "DefinitionError"
    assert "runs as remote, but the prebuild read its call site as inline" in run.error.message


def test_a_pass_for_a_workflow_this_process_does_not_serve_leaves_the_run_alone(
    runner: InProcessRunner, caplog: pytest.LogCaptureFixture
) -> None:
    """Another service's message (or a package whose definitions were not loaded) must not
    fail a run for good: the run waits for a worker of its own service."""
    from orchestrator.store import ClaimRefused

    run_id = runner.start("basic", {"value": 1})
    before = runner.client.get_run(run_id)
    with caplog.at_level("ERROR"):
        assert runner.engine.run_pass(run_id, "somebody-elses") is ClaimRefused.UNSERVED
    assert runner.client.get_run(run_id) == before
    assert "does not serve workflow 'somebody-elses'" in caplog.text
    assert runner.engine.run_pass(run_id, "basic") is RunStatus.PAUSED  # its own worker runs it
