"""What the generated Celery tasks call."""

from __future__ import annotations

from .runtime import runtime
from .supervision import current_owner


def run_orchestrator_pass(run_id: str, *, workflow: str, timer: bool = False) -> None:
    runtime().handler.receive_pass(run_id, workflow, owner=current_owner(), timer=timer)


def execute_step(run_id: str, step: str, *, workflow: str, rpc: str) -> None:
    runtime().handler.receive_step(run_id, step, workflow=workflow, rpc=rpc, owner=current_owner())
