"""Crashes and store failures in the middle of a pass (regressions found in review)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from orchestrator.models import RunStatus, StepStatus
from orchestrator.store import RunStore
from orchestrator.store.sqlite import SqliteStore
from orchestrator.testing import InProcessRunner


def sweep_for(runner: InProcessRunner, minutes: int) -> None:
    """The dead worker's messages are gone; only the sweeper can bring the run back."""
    runner.dispatcher.queue.clear()
    for _ in range(minutes):
        runner.clock.advance(60)
        runner.sweeper.sweep_once()
        runner.drain()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_timer_pass_dying_after_an_inline_commit_is_redriven(
    engineflows: Any, backend: str, tmp_path: Path
) -> None:
    flows, faults = engineflows.flows, engineflows.faults
    flows.CALLS.clear()
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 's.db'}"
    runner = InProcessRunner(RunStore.from_url(url))
    run_id = runner.start("nap-then-inline", {"value": 0})
    runner.drain()
    assert runner.client.get_run(run_id).waiting_for == "timer:nap"
    faults.CRASH.add("b")
    with pytest.raises(faults.Crash):
        runner.advance(2)  # the timer's pass: nap done, 'a' committed, then dies in 'b'
    sweep_for(runner, minutes=5)
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED, run
    assert flows.CALLS["a"] == 1  # committed before the crash: never run again
    assert flows.CALLS["b"] == 2  # interrupted by the crash: run again once


def test_a_failed_final_commit_of_a_timer_pass_is_redriven(engineflows: Any) -> None:
    class FlakyStore(SqliteStore):
        fail_release = False

        def commit_pass(self, *args: Any, **kwargs: Any) -> bool:
            if kwargs.get("release") is not None and self.fail_release:
                self.fail_release = False
                raise OperationalError("UPDATE wf_runs", {}, Exception("database is locked"))
            return super().commit_pass(*args, **kwargs)

    store = FlakyStore("sqlite://")
    runner = InProcessRunner(store)
    run_id = runner.start("nap-then-inline", {"value": 0})
    runner.drain()
    store.fail_release = True
    with pytest.raises(OperationalError):
        runner.advance(2)
    sweep_for(runner, minutes=5)
    assert runner.client.get_run(run_id).status is RunStatus.COMPLETED


def test_a_store_failure_mid_pass_cannot_be_caught_by_user_code(engineflows: Any) -> None:
    """`except Exception` around a step must not see the store's own failure: it would take a
    path (refund) that history records next to the one it did not (charge)."""
    flows = engineflows.flows
    flows.CALLS.clear()

    class BlinkingStore(SqliteStore):
        blink = True

        def commit_pass(self, *args: Any, **kwargs: Any) -> bool:
            if kwargs.get("release") is None and self.blink:
                self.blink = False
                raise OperationalError("INSERT wf_steps", {}, Exception("connection reset"))
            return super().commit_pass(*args, **kwargs)

    runner = InProcessRunner(BlinkingStore("sqlite://"))
    run_id = runner.start("compensating", {"value": 0})
    with pytest.raises(OperationalError):  # the pass ends with the store's own error
        runner.drain()
    assert "refund" not in flows.CALLS
    sweep_for(runner, minutes=5)
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == "charged"
    assert "refund" not in flows.CALLS and [s.name for s in run.steps] == ["charge", "notify"]


def test_an_error_raised_while_a_pause_unwinds_does_not_fail_the_run(engineflows: Any) -> None:
    runner = InProcessRunner()
    run_id = runner.start("finally-raises", {"value": 0})
    runner.engine.run_pass(run_id)
    run = runner.client.get_run(run_id)
    assert (run.status, run.waiting_for) == (RunStatus.PAUSED, "step:remote")
    runner.drain()
    run = runner.client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == 14
    assert run.step("remote").status is StepStatus.SUCCEEDED
