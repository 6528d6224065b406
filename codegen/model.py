"""What the scanner reads out of a workflows package, and the error it reports problems with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import WorkflowError
from orchestrator.manifest import orchestrator_task_name, step_task_name

StepKind = Literal["remote", "inline", "sleep", "event", "child"]

__all__ = [
    "PrebuildError",
    "Problem",
    "RpcDef",
    "ScanResult",
    "StepCall",
    "StepKind",
    "WorkflowDef",
    "orchestrator_task_name",
    "step_task_name",
]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the scanned source, reported as `path:line: message`."""

    path: str  # relative to the project root, with forward slashes
    line: int  # 0 when the problem is not about one line
    message: str

    def __str__(self) -> str:
        if self.line == 0:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


class PrebuildError(WorkflowError):
    """The prebuild found problems in the source; `problems` lists every one, sorted."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class RpcDef:
    name: str
    module: str
    function: str
    file: str
    line: int


@dataclass(frozen=True)
class StepCall:
    """One `ctx.<method>(...)` call site inside a workflow function."""

    name: str  # literal step name, or a template such as "ship-{i}" when `dynamic`
    dynamic: bool
    kind: StepKind
    rpc: str | None
    line: int


@dataclass(frozen=True)
class WorkflowDef:
    name: str
    module: str
    function: str
    file: str
    line: int
    input_type: str | None
    ctx_param: str
    source_sha256: str
    steps: tuple[StepCall, ...]


@dataclass(frozen=True)
class ScanResult:
    package: str  # dotted package name, e.g. "workflows"
    workflows: tuple[WorkflowDef, ...]  # sorted by name
    rpcs: tuple[RpcDef, ...]  # sorted by name
    modules: tuple[str, ...]  # sorted dotted names of the modules defining either

    @property
    def package_dir(self) -> str:
        return self.package.replace(".", "/")
