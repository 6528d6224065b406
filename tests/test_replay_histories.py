"""Replay stored run histories (tests/histories/*.json) against the current workflow code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clock import FakeClock
from orchestrator.models import Run, RunPatch, RunStatus, StepRun
from orchestrator.store import PassClaim
from orchestrator.testing import InProcessRunner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def seed(runner: InProcessRunner, history: dict[str, Any]) -> str:
    """Store the history through the store's own API, as a paused run."""
    now = runner.clock()
    run = Run(
        id="replayed",
        workflow=history["workflow"],
        status=RunStatus.PENDING,
        input=history["input"],
        created_at=now,
        updated_at=now,
    )
    runner.store.create_run(run)
    claim = runner.store.claim_run(run.id, "seed", now, now)
    assert isinstance(claim, PassClaim)
    steps = [
        StepRun.model_validate({"run_id": run.id, "created_at": now, **s}) for s in history["steps"]
    ]
    patch = RunPatch(status=RunStatus.PAUSED, waiting_for="seeded")
    runner.store.commit_pass(run.id, "seed", now, now, steps, patch, release=claim.requested)
    return run.id


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_replay_history(path: Path, engineflows: Any) -> None:
    history = json.loads(path.read_text())
    engineflows.flows.CALLS.clear()
    runner = InProcessRunner(clock=FakeClock())
    run_id = seed(runner, history)
    runner.engine.run_pass(run_id)
    run = runner.client.get_run(run_id)
    expect = history["expect"]
    assert run.status.value == expect["status"], run.error
    if "waiting_for" in expect:
        assert run.waiting_for == expect["waiting_for"]
    if "output" in expect:
        assert run.output == expect["output"]
    if "error_type" in expect:
        assert run.error is not None and run.error.type == expect["error_type"]
        for fragment in expect["error_contains"]:
            assert fragment in run.error.message
    # Replay never re-runs a recorded inline step.
    assert "plusOne" not in engineflows.flows.CALLS


def test_at_least_one_history_must_fail_as_non_deterministic() -> None:
    kinds = {json.loads(p.read_text())["expect"].get("error_type") for p in HISTORIES}
    assert "NonDeterminismError" in kinds
