"""The run state machine: every status change goes through `transition`."""

from __future__ import annotations

from .errors import InvalidTransitionError, RunFinishedError, WorkflowError
from .models import RunStatus

# Failed and cancelled runs go back to pending (not running) when resumed, so that a stray
# orchestrator message can never revive a finished run on its own.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    # running -> running: a pass taking over after the previous one died mid-pass.
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.PAUSED,
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
        }
    ),
    RunStatus.PAUSED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset({RunStatus.PENDING}),
    RunStatus.CANCELLED: frozenset({RunStatus.PENDING}),
}

TERMINAL: frozenset[RunStatus] = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
)


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target in TRANSITIONS[current]


def transition(current: RunStatus, target: RunStatus) -> RunStatus:
    """Return `target` if the move is valid, else raise `InvalidTransitionError`."""
    if not can_transition(current, target):
        raise InvalidTransitionError(current.value, target.value)
    return target


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """Every status from which `target` may be entered (used by atomic store updates)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def claimable() -> frozenset[RunStatus]:
    """Statuses in which an orchestrator pass may take a run: not finished ones."""
    return sources_of(RunStatus.RUNNING) - TERMINAL


def resume_refused(run_id: str, status: RunStatus) -> WorkflowError:
    """Why a run in `status` cannot be resumed (only failed and cancelled runs can)."""
    if status is RunStatus.COMPLETED:
        return RunFinishedError(
            f"run {run_id} has completed: only a failed or cancelled run can be resumed"
        )
    return InvalidTransitionError(
        status.value,
        RunStatus.PENDING.value,
        f"run {run_id} is {status.value}: only a failed or cancelled run can be resumed",
    )
