"""Settings from the environment. With nothing set, everything runs embedded under
./.workflows/: SQLite for run state and a server-less kombu transport as broker."""

from __future__ import annotations

import keyword
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

DEFAULT_PACKAGE = "workflows"
_SWITCH = {"on": True, "1": True, "true": True, "yes": True,
           "off": False, "0": False, "false": False, "no": False}  # fmt: skip


def check_package_name(name: str, source: str = "WORKFLOW_PACKAGE") -> str:
    """`name` if it is a dotted module name (`myapp.flows`), else `ConfigurationError`."""
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in name.split(".")):
        raise ConfigurationError(
            f"{source} must be a dotted module name such as myapp.flows, not {name!r}"
        )
    return name


def workflow_package(env: Mapping[str, str] | None = None) -> str:
    """The workflows package: `WORKFLOW_PACKAGE`, read the same way by the prebuild, the
    workers, the client and the CLI (each may take a flag that overrides it)."""
    env = os.environ if env is None else env
    return check_package_name(env.get("WORKFLOW_PACKAGE") or DEFAULT_PACKAGE)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    package: str
    queue_grouping: QueueGrouping
    step_lease: timedelta
    run_lease: timedelta
    sweep_interval: timedelta
    redrive_after: timedelta
    max_countdown: timedelta
    broker_poll_interval: float
    dispatcher: str
    eager: bool
    eager_steps: int
    eager_time: timedelta

    @property
    def embedded_database(self) -> bool:
        """The default SQLite file under `home`, which is created on first use (a database
        URL that is given must point somewhere that exists)."""
        return self.database_url == self.default_database_url(self.home)

    @staticmethod
    def default_database_url(home: Path) -> str:
        return f"sqlite:///{home / 'state.sqlite'}"

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
        eager = env.get("WORKFLOW_EAGER", "on").strip().lower()
        if eager not in _SWITCH:
            raise ConfigurationError(f"WORKFLOW_EAGER must be on or off, not {eager!r}")
        try:
            eager_steps = int(env.get("WORKFLOW_EAGER_STEPS", "20"))
        except ValueError:
            eager_steps = -1
        if eager_steps < 1:
            raise ConfigurationError("WORKFLOW_EAGER_STEPS must be a whole number, at least 1")
        return cls(
            home=home,
            database_url=env.get("WORKFLOW_DATABASE_URL") or cls.default_database_url(home),
            # The embedded broker (workers/fs_transport.py): message files under home/broker.
            broker_url=env.get("WORKFLOW_BROKER_URL") or "localfs://",
            package=workflow_package(env),
            queue_grouping=grouping,
            step_lease=duration("WORKFLOW_STEP_LEASE", "30s"),
            run_lease=duration("WORKFLOW_RUN_LEASE", "60s"),
            sweep_interval=duration("WORKFLOW_SWEEP_INTERVAL", "5s"),
            redrive_after=duration("WORKFLOW_REDRIVE_AFTER", "30s"),
            max_countdown=duration("WORKFLOW_MAX_COUNTDOWN", "5m"),
            broker_poll_interval=poll,
            dispatcher=env.get("WORKFLOW_DISPATCHER", "workers.dispatch:CeleryDispatcher"),
            eager=_SWITCH[eager],
            eager_steps=eager_steps,
            eager_time=duration("WORKFLOW_EAGER_TIME", "200ms"),
        )
