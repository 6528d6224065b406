"""Per-step policies: retries with backoff, timeouts, and what a final failure does."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .durations import parse_duration


def _seconds(value: Any) -> float:
    return parse_duration(value).total_seconds()


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple | set | frozenset) else [value]
    return tuple(sorted(i.__name__ if isinstance(i, type) else str(i) for i in items))


class RetryPolicy(BaseModel):
    """How often and how soon a failed step is tried again.

    `retry_on` / `non_retryable` take exception classes or names; an error matches by its own
    class name or any base class name (so `ConnectionError` matches `ConnectionRefusedError`).
    With `retry_on` empty, every error not `non_retryable` is retried.
    """

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=3, ge=1)
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    initial_delay: float = 1.0  # seconds; durations like "500ms" are accepted
    max_delay: float = 300.0
    jitter: float = Field(default=0.1, ge=0, le=1)  # +- this fraction of the delay
    retry_on: tuple[str, ...] = ()
    non_retryable: tuple[str, ...] = ()

    _seconds = field_validator("initial_delay", "max_delay", mode="before")(_seconds)
    _names = field_validator("retry_on", "non_retryable", mode="before")(_names)

    def allows(self, attempts: int, error_names: frozenset[str]) -> bool:
        """Whether to try again after `attempts` attempts ended with these error names."""
        if attempts >= self.max_attempts or error_names & set(self.non_retryable):
            return False
        return not self.retry_on or bool(error_names & set(self.retry_on))

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """The wait before attempt `attempts + 1`."""
        n = max(attempts, 1)
        if self.backoff == "exponential":
            base = self.initial_delay * 2 ** (n - 1)
        elif self.backoff == "linear":
            base = self.initial_delay * n
        else:
            base = self.initial_delay
        base = min(base, self.max_delay)
        spread = base * self.jitter
        return timedelta(seconds=max(0.0, base + (rng or random).uniform(-spread, spread)))


class StepPolicy(BaseModel):
    """What a call site asked for: `ctx.do(..., retry=..., timeout=..., on_error=...)`."""

    model_config = ConfigDict(frozen=True)

    retry: RetryPolicy | None = None
    timeout: float | None = None  # seconds per attempt
    on_error: Literal["fail", "continue"] = "fail"

    _timeout = field_validator("timeout", mode="before")(
        lambda v: None if v is None else _seconds(v)
    )
