"""Durable, replayed workflows on Celery: the engine, run store and client (no Celery here;
`workers/` adapts this package to Celery)."""

from .client import WorkflowClient, default_client, get_run, list_runs, start, wait_for_run
from .context import WorkflowContext
from .definitions import RpcFunction, WorkflowDefinition, rpc, workflow
from .errors import (
    ConfigurationError,
    DefinitionError,
    InvalidTransitionError,
    LeaseLostError,
    NonDeterminismError,
    RunExistsError,
    RunNotFoundError,
    RunTimeoutError,
    SerializationError,
    StaleBuildError,
    StepFailedError,
    UnknownRpcError,
    UnknownWorkflowError,
    WorkflowAsyncException,
    WorkflowError,
)
from .handle import WorkflowHandle
from .models import ErrorInfo, Run, RunStatus, StepKind, StepRun, StepStatus
from .steps import StepInfo, current_step

__all__ = [
    # Defining workflows and the functions they call
    "workflow",
    "rpc",
    "WorkflowContext",
    "WorkflowDefinition",
    "RpcFunction",
    "current_step",
    "StepInfo",
    # Starting and inspecting runs
    "WorkflowClient",
    "WorkflowHandle",
    "default_client",
    "start",
    "get_run",
    "list_runs",
    "wait_for_run",
    # Run and step records
    "Run",
    "StepRun",
    "RunStatus",
    "StepKind",
    "StepStatus",
    "ErrorInfo",
    # Errors (all derive from WorkflowError) and the pause signal (a BaseException)
    "WorkflowError",
    "ConfigurationError",
    "DefinitionError",
    "InvalidTransitionError",
    "LeaseLostError",
    "NonDeterminismError",
    "RunExistsError",
    "RunNotFoundError",
    "RunTimeoutError",
    "SerializationError",
    "StaleBuildError",
    "StepFailedError",
    "UnknownRpcError",
    "UnknownWorkflowError",
    "WorkflowAsyncException",
]
