"""Small pure pieces: the run state machine, durations, JSON serialization, settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator.config import Settings
from orchestrator.durations import parse_duration
from orchestrator.errors import (
    ConfigurationError,
    InvalidTransitionError,
    SerializationError,
    WorkflowAsyncException,
    WorkflowError,
)
from orchestrator.models import RunStatus
from orchestrator.serialization import to_jsonable
from orchestrator.states import TERMINAL, claimable, transition


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (RunStatus.PENDING, RunStatus.RUNNING),
        (RunStatus.RUNNING, RunStatus.PAUSED),
        (RunStatus.PAUSED, RunStatus.RUNNING),
        (RunStatus.RUNNING, RunStatus.COMPLETED),
        (RunStatus.RUNNING, RunStatus.FAILED),
        (RunStatus.PAUSED, RunStatus.CANCELLED),
        (RunStatus.FAILED, RunStatus.PENDING),
    ],
)
def test_valid_transitions(current: RunStatus, target: RunStatus) -> None:
    assert transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (RunStatus.COMPLETED, RunStatus.RUNNING),
        (RunStatus.PENDING, RunStatus.COMPLETED),
        (RunStatus.PAUSED, RunStatus.PAUSED),
        (RunStatus.FAILED, RunStatus.RUNNING),
        (RunStatus.CANCELLED, RunStatus.COMPLETED),
    ],
)
def test_invalid_transitions_raise(current: RunStatus, target: RunStatus) -> None:
    with pytest.raises(InvalidTransitionError, match=f"{current.value!r} -> {target.value!r}"):
        transition(current, target)


def test_finished_runs_are_never_claimable() -> None:
    assert claimable() == {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED}
    assert not claimable() & TERMINAL


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5),
        ("3m", 180),
        ("2h", 7200),
        ("1d", 86400),
        (7, 7),
        (1.5, 1.5),
        (timedelta(minutes=1), 60),
        (" 2 s ", 2),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value).total_seconds() == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["5 sec", "", "-1s", -3, "1w", True, None, [1]])
def test_bad_durations_name_the_value(value: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid duration"):
        parse_duration(value)  # type: ignore[arg-type]


def test_to_jsonable_converts_models_and_rejects_the_rest() -> None:
    class Point(BaseModel):
        x: int

    assert to_jsonable({"p": Point(x=1), "t": (1, 2)}, "result") == {"p": {"x": 1}, "t": [1, 2]}
    with pytest.raises(SerializationError, match="result of step 'a' is not JSON-serializable"):
        to_jsonable(object(), "result of step 'a'")
    with pytest.raises(SerializationError):
        to_jsonable(float("nan"), "x")


def test_pause_signal_escapes_except_exception() -> None:
    assert not issubclass(WorkflowAsyncException, Exception)
    with pytest.raises(WorkflowAsyncException):
        try:
            raise WorkflowAsyncException("step:a")
        except Exception:  # what user code writes
            pytest.fail("swallowed")
    assert issubclass(InvalidTransitionError, WorkflowError)


def test_settings_default_to_embedded_sqlite_and_broker(tmp_path: Path) -> None:
    s = Settings.from_env({"WORKFLOW_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'state.sqlite'}"
    assert s.embedded_broker
    r = Settings.from_env(
        {"WORKFLOW_BROKER_URL": "redis://x", "WORKFLOW_DATABASE_URL": "postgresql://y"}
    )
    assert not r.embedded_broker and r.database_url == "postgresql://y"


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="WORKFLOW_QUEUES"):
        Settings.from_env({"WORKFLOW_QUEUES": "nope"})
    with pytest.raises(ConfigurationError, match="WORKFLOW_STEP_LEASE"):
        Settings.from_env({"WORKFLOW_STEP_LEASE": "soon"})
