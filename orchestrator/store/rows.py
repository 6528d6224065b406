"""Rows of the SQL tables to models and back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..models import ErrorInfo, Event, Run, StepRun
from ..retry import StepPolicy
from ..serialization import dumps, loads


def error_from(text: str | None) -> ErrorInfo | None:
    return None if text is None else ErrorInfo.model_validate_json(text)


def step_from_row(row: Mapping[Any, Any]) -> StepRun:
    return StepRun(
        run_id=row["run_id"],
        name=row["name"],
        kind=row["kind"],
        status=row["status"],
        seq=row["seq"],
        target=row["target"],
        task=row["task"],
        input=loads(row["input"]),
        result=loads(row["result"]),
        error=error_from(row["error"]),
        attempts=row["attempts"],
        errors=[ErrorInfo.model_validate(e) for e in loads(row["errors"]) or []],
        policy=StepPolicy.model_validate_json(row["policy"]) if row["policy"] else None,
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        wake_at=row["wake_at"],
    )


def run_from_row(row: Mapping[Any, Any], step_rows: Sequence[Mapping[Any, Any]] = ()) -> Run:
    return Run(
        id=row["id"],
        workflow=row["workflow"],
        status=row["status"],
        waiting_for=row["waiting_for"],
        input=loads(row["input"]),
        output=loads(row["output"]),
        error=error_from(row["error"]),
        version=row["version"],
        parent_run_id=row["parent_run_id"],
        parent_step=row["parent_step"],
        parent_workflow=row["parent_workflow"],
        cancel_requested=row["cancel_requested"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        steps=[step_from_row(s) for s in step_rows],
    )


def step_values(step: StepRun) -> dict[str, Any]:
    return {
        "run_id": step.run_id,
        "name": step.name,
        "seq": step.seq,
        "kind": step.kind.value,
        "status": step.status.value,
        "target": step.target,
        "task": step.task,
        "input": dumps(step.input),
        "result": None if step.result is None else dumps(step.result),
        "error": step.error.model_dump_json() if step.error else None,
        "attempts": step.attempts,
        "errors": dumps([e.model_dump(mode="json") for e in step.errors]) if step.errors else None,
        "policy": step.policy.model_dump_json() if step.policy else None,
        "created_at": step.created_at,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
        "wake_at": step.wake_at,
    }


def run_values(run: Run) -> dict[str, Any]:
    """A new run's row, with its first pass requested."""
    return {
        "id": run.id,
        "workflow": run.workflow,
        "status": run.status.value,
        "waiting_for": run.waiting_for,
        "input": dumps(run.input),
        "version": run.version,
        "parent_run_id": run.parent_run_id,
        "parent_step": run.parent_step,
        "parent_workflow": run.parent_workflow,
        "idempotency_key": run.idempotency_key,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "requested": 1,
        "done": 0,
        "requested_at": run.created_at,
    }


def event_from_row(row: Mapping[Any, Any]) -> Event:
    return Event(
        id=row["id"],
        run_id=row["run_id"],
        name=row["name"],
        payload=loads(row["payload"]),
        created_at=row["created_at"],
    )
