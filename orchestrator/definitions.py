"""`@workflow` and `@rpc`: the decorators user code applies, and the registry they fill."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, update_wrapper
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from pydantic import TypeAdapter

from .errors import DefinitionError, StaleBuildError, UnknownRpcError, UnknownWorkflowError
from .manifest import WorkflowManifest, installed, source_sha256
from .models import Run, RunStatus
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .context import WorkflowContext

P = ParamSpec("P")
R = TypeVar("R")
InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")


def _source_hash(fn: Callable[..., Any]) -> str | None:
    path = inspect.getsourcefile(fn)
    return source_sha256(Path(path).read_bytes()) if path else None


def _first_param_annotation(fn: Callable[..., Any], index: int) -> Any:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) <= index:
        return None
    hints = typing.get_type_hints(fn)
    return hints.get(params[index].name, Any)


class RpcFunction(Generic[P, R]):
    """An `@rpc` function: still callable directly; run as a remote step by a worker."""

    def __init__(self, name: str, fn: Callable[P, R]) -> None:
        self.name = name
        self.fn = fn
        self.takes_data = len(inspect.signature(fn).parameters) > 0
        update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @cached_property
    def _input_adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(_first_param_annotation(self.fn, 0))

    def invoke(self, data: Any) -> Any:
        """Call with a step's stored JSON input, validated into the parameter's type."""
        if not self.takes_data:
            return self.fn()  # type: ignore[call-arg]
        return self.fn(self._input_adapter.validate_python(data))  # type: ignore[call-arg]

    def __repr__(self) -> str:
        return f"<rpc {self.name!r} {self.fn.__module__}.{self.fn.__qualname__}>"


class WorkflowDefinition(Generic[InputT, OutputT]):
    """A `@workflow` function and what the runtime needs to know about it."""

    def __init__(
        self,
        name: str,
        fn: Callable[[WorkflowContext, InputT], OutputT],
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.fn = fn
        self.retry = retry  # the default for steps that set none
        self.source_sha256 = _source_hash(fn)
        update_wrapper(self, fn)

    def __call__(self, ctx: WorkflowContext, data: InputT) -> OutputT:
        return self.fn(ctx, data)

    @cached_property
    def input_adapter(self) -> TypeAdapter[InputT]:
        return TypeAdapter(_first_param_annotation(self.fn, 1))

    def validate_input(self, data: Any) -> InputT:
        """Raise pydantic's `ValidationError` for input the workflow does not accept."""
        return self.input_adapter.validate_python(data)

    def dump_input(self, value: InputT) -> Any:
        return self.input_adapter.dump_python(value, mode="json")

    def new_run(
        self,
        input: Any,
        run_id: str,
        now: datetime,
        parent: Run | None = None,
        step: str = "",
        idempotency_key: str | None = None,
    ) -> Run:
        """A pending run of this workflow: input validated (pydantic's `ValidationError`) and
        stamped with the manifest's version (`StaleBuildError` if the build is stale)."""
        data = self.dump_input(self.validate_input(input))
        return Run(
            id=run_id,
            workflow=self.name,
            status=RunStatus.PENDING,
            input=data,
            version=self.manifest().version,
            parent_run_id=parent.id if parent else None,
            parent_step=step or None,
            parent_workflow=parent.workflow if parent else None,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )

    def manifest(self) -> WorkflowManifest:
        """This workflow's manifest entry, checked against the code actually loaded."""
        entry = installed().workflow(self.name)
        if self.source_sha256 is not None and entry.source_sha256 != self.source_sha256:
            raise StaleBuildError(f"{entry.file} changed since the prebuild")
        return entry

    def __repr__(self) -> str:
        return f"<workflow {self.name!r} {self.fn.__module__}.{self.fn.__qualname__}>"


@dataclass
class Registry:
    workflows: dict[str, WorkflowDefinition[Any, Any]] = field(default_factory=dict)
    rpcs: dict[str, RpcFunction[..., Any]] = field(default_factory=dict)

    def add_workflow(self, definition: WorkflowDefinition[Any, Any]) -> None:
        self._check_unique(self.workflows.get(definition.name), definition.fn, "workflow")
        self.workflows[definition.name] = definition

    def add_rpc(self, fn: RpcFunction[..., Any]) -> None:
        self._check_unique(self.rpcs.get(fn.name), fn.fn, "rpc")
        self.rpcs[fn.name] = fn

    @staticmethod
    def _check_unique(old: Any, fn: Callable[..., Any], kind: str) -> None:
        # Re-importing the same module (reloads, test runners) re-registers the same function.
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise DefinitionError(
                f"{kind} {old.name!r} is defined twice: {old.fn.__module__}.{old.fn.__qualname__}"
                f" and {fn.__module__}.{fn.__qualname__}"
            )

    def workflow(self, name: str) -> WorkflowDefinition[Any, Any]:
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise UnknownWorkflowError(f"no workflow named {name!r} (known: {known})") from None

    def rpc(self, name: str) -> RpcFunction[..., Any]:
        try:
            return self.rpcs[name]
        except KeyError:
            raise UnknownRpcError(f"no @rpc function named {name!r}") from None


REGISTRY = Registry()


def _check_name(name: object, kind: str) -> str:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise DefinitionError(f"@{kind} needs a non-empty name without spaces, got {name!r}")
    return name


def rpc(name: str) -> Callable[[Callable[P, R]], RpcFunction[P, R]]:
    """Register a function that workflows call as a remote step by `name` or by reference."""
    _check_name(name, "rpc")

    def decorate(fn: Callable[P, R]) -> RpcFunction[P, R]:
        wrapped = RpcFunction(name, fn)
        REGISTRY.add_rpc(wrapped)
        return wrapped

    return decorate


def workflow(
    name: str,
    *,
    retry: RetryPolicy | None = None,
) -> Callable[[Callable[[WorkflowContext, InputT], OutputT]], WorkflowDefinition[InputT, OutputT]]:
    """Register a workflow function `fn(ctx, data)` under `name`; `retry` is the default
    retry policy of its steps."""
    _check_name(name, "workflow")

    def decorate(
        fn: Callable[[WorkflowContext, InputT], OutputT],
    ) -> WorkflowDefinition[InputT, OutputT]:
        definition = WorkflowDefinition(name, fn, retry)
        REGISTRY.add_workflow(definition)
        return definition

    return decorate
