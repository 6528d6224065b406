"""Durable, replayed workflows on Celery: the engine, run store and client (no Celery here;
`workers/` adapts this package to Celery)."""

from .client import (
    WorkflowClient,
    cancel_run,
    default_client,
    fork_run,
    get_run,
    list_runs,
    resume_run,
    send_event,
    start,
    wait_for_run,
)
from .context import StepCall, WorkflowContext
from .definitions import RpcFunction, WorkflowDefinition, rpc, workflow
from .errors import (
    ConfigurationError,
    DefinitionError,
    EventTimeout,
    InvalidTransitionError,
    LeaseLostError,
    NonDeterminismError,
    RunExistsError,
    RunFinishedError,
    RunNotFoundError,
    RunTimeoutError,
    SerializationError,
    StaleBuildError,
    StepFailedError,
    StepTimeoutError,
    UnknownRpcError,
    UnknownWorkflowError,
    WorkflowAsyncException,
    WorkflowCancelled,
    WorkflowError,
)
from .handle import WorkflowHandle
from .models import ErrorInfo, Event, Run, RunStatus, StepKind, StepRun, StepStatus
from .retry import RetryPolicy, StepPolicy
from .steps import StepInfo, current_step

__all__ = [
    # Defining workflows and the functions they call
    "workflow",
    "rpc",
    "WorkflowContext",
    "StepCall",
    "RetryPolicy",
    "StepPolicy",
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
    "send_event",
    "cancel_run",
    "resume_run",
    "fork_run",
    # Run and step records
    "Run",
    "StepRun",
    "RunStatus",
    "StepKind",
    "StepStatus",
    "ErrorInfo",
    "Event",
    # Errors (all derive from WorkflowError) and the two control-flow signals (BaseException)
    "WorkflowError",
    "ConfigurationError",
    "DefinitionError",
    "EventTimeout",
    "InvalidTransitionError",
    "LeaseLostError",
    "NonDeterminismError",
    "RunExistsError",
    "RunFinishedError",
    "RunNotFoundError",
    "RunTimeoutError",
    "SerializationError",
    "StaleBuildError",
    "StepFailedError",
    "StepTimeoutError",
    "UnknownRpcError",
    "UnknownWorkflowError",
    "WorkflowAsyncException",
    "WorkflowCancelled",
]
