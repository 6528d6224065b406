"""Parse step durations: "500ms", "5s", "3m", "2h", "1d", plain seconds, or a timedelta."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import ConfigurationError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")

Duration = str | int | float | timedelta


def parse_duration(value: Duration) -> timedelta:
    """Return a non-negative timedelta, or raise `ConfigurationError` naming the bad value."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ConfigurationError(f"invalid duration {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ConfigurationError(
                f"invalid duration {value!r}: use a number with ms, s, m, h or d (e.g. '5s')"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ConfigurationError(f"invalid duration {value!r}")
    if seconds < 0:
        raise ConfigurationError(f"invalid duration {value!r}: must not be negative")
    return timedelta(seconds=seconds)
