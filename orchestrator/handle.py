"""`workflows.<name>`: a typed handle on one workflow, made by the prebuild."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from .client import WorkflowClient, default_client
from .definitions import WorkflowDefinition
from .models import Run, RunStatus

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")


class WorkflowHandle(Generic[InputT, OutputT]):
    def __init__(
        self,
        definition: WorkflowDefinition[InputT, OutputT],
        client: WorkflowClient | None = None,
    ) -> None:
        self.definition = definition
        self.name = definition.name
        self._client = client

    @property
    def client(self) -> WorkflowClient:
        return self._client or default_client()

    def start(
        self,
        input: InputT | Mapping[str, Any],
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start a run; invalid input raises pydantic's `ValidationError`. The same `run_id`
        or `idempotency_key` twice returns the same run."""
        return self.client.start(
            self.definition, input, run_id=run_id, idempotency_key=idempotency_key
        )

    def get_run(self, run_id: str) -> Run:
        return self.client.get_run(run_id)

    def list_runs(self, status: RunStatus | str | None = None, limit: int = 100) -> list[Run]:
        return self.client.list_runs(self.name, status, limit)

    def run(self, input: InputT | Mapping[str, Any], *, timeout: float = 60.0) -> Run:
        """Start a run and wait for it to finish (completed, failed or cancelled)."""
        return self.client.run(self.definition, input, timeout=timeout)

    def __getattr__(self, attribute: str) -> Any:
        # The handle takes the place of its module's name in the package (workflows.onboarding);
        # everything else the module defines stays reachable through it.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(sys.modules[self.definition.fn.__module__], attribute)

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.name!r}>"
