"""JSON values every supported database can store: PostgreSQL refuses a NUL character in any string of a
``jsonb`` (or text) column, and JSON itself has no NaN or Infinity, which Python's ``json`` accepts."""

from __future__ import annotations

import math
from typing import Any


def json_unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be stored in a JSON column of every supported database, or None: PostgreSQL
    refuses a NUL character in any string (key or value), and JSON has no NaN or Infinity."""
    if isinstance(value, dict):
        parts = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        parts = value
    elif isinstance(value, str):
        return "a NUL character" if "\x00" in value else None
    elif isinstance(value, float) and not math.isfinite(value):
        return "NaN or Infinity"
    else:
        return None
    for part in parts:
        why = json_unstorable(part)
        if why is not None:
            return why
    return None


def json_storable(value: Any) -> Any:
    """``value`` made storable (see :func:`json_unstorable`): NUL characters become U+FFFD, NaN and
    Infinity become null. For what a tool returns or a model sends, which is kept whatever it holds."""
    if isinstance(value, dict):
        return {json_storable(key): json_storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_storable(item) for item in value]
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
