"""The tool registry: tools are declared in code, each with a JSON Schema for its arguments, a handler,
a timeout, a side-effect class and a default approval policy. A new tool is one :func:`register` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import models


class SideEffect(models.TextChoices):
    READ_ONLY = "read_only", "Reads only"
    MUTATING = "mutating", "Changes something"
    RUNS_CODE = "runs_code", "Runs code"


@dataclass(frozen=True)
class ToolContext:
    """What a handler may use: the organization, the chat session (None for none) and the call's row."""

    organization: Any
    session: Any
    tool_call: Any
    user: Any = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[[ToolContext, dict[str, Any]], Any]
    timeout: float = 30.0
    side_effect: str = SideEffect.READ_ONLY
    default_policy: str = "auto"
    requires: Callable[[], bool] | None = field(default=None, repr=False)  # e.g. a feature flag

    def available(self) -> bool:
        return self.requires is None or self.requires()

    def openai_spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "timeout": self.timeout,
            "side_effect": self.side_effect,
            "default_policy": self.default_policy,
        }


_REGISTRY: dict[str, ToolSpec] = {}


def register(spec: ToolSpec) -> ToolSpec:
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a tool (tests register throwaway tools)."""
    _REGISTRY.pop(name, None)


def get_tool(name: str) -> ToolSpec | None:
    _load_builtins()
    return _REGISTRY.get(name)


def all_tools() -> list[ToolSpec]:
    _load_builtins()
    return sorted(_REGISTRY.values(), key=lambda t: t.name)


def _load_builtins() -> None:
    from tools_app.builtin import tools  # noqa: F401  (registers the built-in tools on import)
