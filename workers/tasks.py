"""What the generated Celery tasks call."""

from __future__ import annotations

from .runtime import runtime


def run_orchestrator_pass(run_id: str, *, workflow: str) -> None:
    runtime().engine.run_pass(run_id, workflow)


def execute_step(run_id: str, step: str, *, workflow: str, rpc: str) -> None:
    runtime().executor.execute(run_id, step, workflow=workflow, rpc=rpc)
