"""Settings from the environment. With nothing set, everything runs embedded under
./.workflows/: SQLite for run state and a server-less kombu transport as broker."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from .durations import parse_duration
from .errors import ConfigurationError

QueueGrouping = Literal["step", "workflow", "shared"]
_GROUPINGS: tuple[QueueGrouping, ...] = ("step", "workflow", "shared")


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    package: str
    tasks_module: str
    queue_grouping: QueueGrouping
    step_lease: timedelta
    run_lease: timedelta
    sweep_interval: timedelta
    redrive_after: timedelta
    max_countdown: timedelta
    broker_poll_interval: float
    dispatcher: str

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url.startswith(("redis", "rediss", "amqp", "pyamqp", "sentinel"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("WORKFLOW_HOME", ".workflows")).resolve()

        def duration(key: str, default: str) -> timedelta:
            try:
                return parse_duration(env.get(key, default))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{key}: {exc}") from None

        grouping = env.get("WORKFLOW_QUEUES", "step")
        if grouping not in _GROUPINGS:
            raise ConfigurationError(
                f"WORKFLOW_QUEUES must be one of {', '.join(_GROUPINGS)}, not {grouping!r}"
            )
        try:
            poll = float(env.get("WORKFLOW_BROKER_POLL_INTERVAL", "0.02"))
        except ValueError:
            raise ConfigurationError("WORKFLOW_BROKER_POLL_INTERVAL must be seconds") from None
        return cls(
            home=home,
            database_url=env.get("WORKFLOW_DATABASE_URL") or f"sqlite:///{home / 'state.sqlite'}",
            # The embedded broker (workers/fs_transport.py): message files under home/broker.
            broker_url=env.get("WORKFLOW_BROKER_URL") or "localfs://",
            package=env.get("WORKFLOW_PACKAGE", "workflows"),
            tasks_module=env.get("WORKFLOW_TASKS_MODULE", "workers.generated"),
            queue_grouping=grouping,
            step_lease=duration("WORKFLOW_STEP_LEASE", "30s"),
            run_lease=duration("WORKFLOW_RUN_LEASE", "60s"),
            sweep_interval=duration("WORKFLOW_SWEEP_INTERVAL", "5s"),
            redrive_after=duration("WORKFLOW_REDRIVE_AFTER", "30s"),
            max_countdown=duration("WORKFLOW_MAX_COUNTDOWN", "5m"),
            broker_poll_interval=poll,
            dispatcher=env.get("WORKFLOW_DISPATCHER", "workers.dispatch:CeleryDispatcher"),
        )
