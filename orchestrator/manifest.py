"""The prebuild manifest: what `python -m codegen prebuild` found, read back at run time.

The runtime trusts only what the manifest says about call sites, so a step the prebuild did
not see, or a source file edited since, is reported as a stale build instead of misrouted.
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .errors import DefinitionError, StaleBuildError

MANIFEST_FORMAT = 1


def orchestrator_task_name(workflow: str) -> str:
    """The task (and default queue) of a workflow's orchestrator passes."""
    return f"wf.{workflow}.orchestrator"


def step_task_name(workflow: str, step: str) -> str:
    """The task (and default queue) of a remote step call site."""
    return f"wf.{workflow}.{step}"


class StepSite(BaseModel):
    """One `ctx.do` / `ctx.sleep` call site of a workflow, in source order."""

    model_config = ConfigDict(frozen=True)

    name: str  # the literal step name, or an f-string template such as "ship-{i}"
    dynamic: bool = False  # True when `name` is an f-string template
    kind: Literal["remote", "inline", "sleep", "event", "child"]
    rpc: str | None = None  # remote steps: the RPC name called
    task: str | None = None  # remote steps: the generated Celery task's name
    queue: str | None = None  # remote steps: the default queue (wf.<workflow>.<step>)
    line: int

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{[^{}]*\}", self.name)
        return re.compile("(.+?)".join(re.escape(p) for p in parts) + r"\Z")

    def matches(self, step_name: str) -> bool:
        # Ordinal suffixes (name#1) come from repeated reaches of one call site.
        base = step_name.split("#", 1)[0]
        if self.dynamic:
            return self.pattern.match(base) is not None
        return base == self.name


class WorkflowManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    module: str
    function: str
    file: str  # relative to the project root the prebuild ran in
    line: int
    source_sha256: str  # of the module file: detects edits made after the prebuild
    version: str  # hash of the ordered step sites: changes when the step graph changes
    input_type: str | None = None
    orchestrator_task: str
    orchestrator_queue: str
    steps: tuple[StepSite, ...]

    def site_for(self, step_name: str, kind: str) -> StepSite:
        """The call site a runtime step name belongs to, or `StaleBuildError`."""
        for site in self.steps:
            if site.kind == kind and not site.dynamic and site.matches(step_name):
                return site
        for site in self.steps:
            if site.kind == kind and site.dynamic and site.matches(step_name):
                return site
        seen_as = [site.kind for site in self.steps if site.matches(step_name)]
        if seen_as:
            # Not stale: the prebuild read this call site differently (a target held in a
            # variable cannot be resolved without running the code).
            raise DefinitionError(
                f"workflow {self.name!r}: step {step_name!r} runs as {kind}, but the prebuild "
                f"read its call site as {seen_as[0]}; pass the RPC name as a string literal or "
                "the @rpc function itself"
            )
        raise StaleBuildError(
            f"workflow {self.name!r} reached {kind} step {step_name!r}, which the generated "
            f"code does not know"
        )


class RpcManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    module: str
    function: str
    file: str
    line: int


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: int = MANIFEST_FORMAT
    workflows: dict[str, WorkflowManifest]
    rpcs: dict[str, RpcManifest]

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    @cached_property
    def _rpc_of_task(self) -> dict[str, str]:
        return {
            site.task: site.rpc
            for wf in self.workflows.values()
            for site in wf.steps
            if site.task and site.rpc
        }

    def rpc_of(self, task: str) -> str:
        """The RPC a remote call site's task calls (`StaleBuildError` for an unknown task)."""
        try:
            return self._rpc_of_task[task]
        except KeyError:
            raise StaleBuildError(f"no call site in the manifest has task {task!r}") from None

    def workflow(self, name: str) -> WorkflowManifest:
        try:
            return self.workflows[name]
        except KeyError:
            raise StaleBuildError(f"workflow {name!r} is not in the prebuild manifest") from None


def source_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_installed: Manifest | None = None


def install(manifest: Manifest | Path) -> Manifest:
    """Add `manifest` to what the runtime checks against (the generated code does this on
    import). Several workflow packages may be installed in one process; a later install of a
    workflow replaces the earlier entry."""
    global _installed
    new = Manifest.load(manifest) if isinstance(manifest, Path) else manifest
    if _installed is not None:
        new = Manifest(
            workflows={**_installed.workflows, **new.workflows},
            rpcs={**_installed.rpcs, **new.rpcs},
        )
    _installed = new
    return _installed


def installed() -> Manifest:
    if _installed is None:
        raise StaleBuildError("no prebuild manifest is loaded (import your workflows package)")
    return _installed
