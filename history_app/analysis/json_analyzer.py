"""Analyser for JSON documents."""

from __future__ import annotations

import json
from typing import Any

from .base import Analysis, Analyzer, TextDecodeError, decode_text, plural, registry
from .detection import JSON

_MAX_KEYS_LISTED = 50
_MAX_KEY_CHARS = 100

_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    # bool before int/float: bool is a subclass of int.
    (bool, "boolean"),
    (dict, "object"),
    (list, "array"),
    (str, "string"),
    (int, "number"),
    (float, "number"),
)


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type."""
    if value is None:
        return "null"
    for python_type, name in _TYPE_NAMES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__  # pragma: no cover - json.loads yields only the above


@registry.register(JSON)
class JsonAnalyzer(Analyzer):
    """Validates JSON and describes its top level.

    Invalid JSON is a successful analysis (``valid`` is False and the position of
    the problem is in ``details["error"]``); the text is still provided so the
    model can help fix it.  ``Analysis.error`` is reserved for undecodable bytes.
    """

    kind = "json"

    def analyze(self, data: bytes, filename: str, content_type: str) -> Analysis:
        try:
            text = decode_text(data)
        except TextDecodeError as exc:
            return self.failure("JSON file (unreadable)", str(exc))

        details: dict[str, Any] = {"language": "json"}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            details.update(
                valid=False,
                error={"message": exc.msg, "line": exc.lineno, "column": exc.colno, "position": exc.pos},
            )
            summary = f"Invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        except RecursionError:
            # Deeply nested input ("[[[[...") exhausts the stack in the decoder.
            details.update(valid=False, error={"message": "Nesting too deep to parse"})
            summary = "Invalid JSON: nesting too deep to parse"
        else:
            details.update(valid=True, **self._describe(value))
            summary = self._summarize(value)
        capped = self.cap_text(text, details)
        return Analysis(kind=self.kind, summary=summary, details=details, text=capped)

    @staticmethod
    def _describe(value: Any) -> dict[str, Any]:
        description: dict[str, Any] = {"top_level_type": json_type_name(value)}
        if isinstance(value, dict):
            description["length"] = len(value)
            description["keys"] = [key[:_MAX_KEY_CHARS] for key in list(value)[:_MAX_KEYS_LISTED]]
        elif isinstance(value, list):
            description["length"] = len(value)
            description["item_types"] = sorted({json_type_name(item) for item in value})
        return description

    @staticmethod
    def _summarize(value: Any) -> str:
        if isinstance(value, dict):
            keys = ", ".join(key[:40] for key in list(value)[:5])
            more = ", …" if len(value) > 5 else ""
            suffix = f": {keys}{more}" if value else ""
            return f"JSON object with {plural(len(value), 'key')}{suffix}"
        if isinstance(value, list):
            return f"JSON array of {plural(len(value), 'item')}"
        return f"JSON {json_type_name(value)}"
