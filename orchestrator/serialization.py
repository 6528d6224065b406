"""JSON on the wire and in the store; never pickle."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .errors import SerializationError


def to_jsonable(value: Any, what: str) -> Any:
    """Return `value` as plain JSON data (models, datetimes, UUIDs... converted).

    `what` names the thing in the error, e.g. "result of step 'createUser'".
    """
    try:
        data = to_jsonable_python(value)
        # Round-trip so the caller gets exactly what a replay will read back from the store.
        return json.loads(json.dumps(data, allow_nan=False))
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} is not JSON-serializable ({type(value).__name__}): {exc}"
        ) from None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def model_dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
