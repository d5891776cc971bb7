"""The built-in tools: calculator, current time, history search, and python / shell execution."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from tools_app.builtin.calculator import CalculatorError, evaluate
from tools_app.registry import SideEffect, ToolContext, ToolSpec, register

SEARCH_RESULT_CHARS = 1000  # of each matching message, in a search_history result


class ToolFailed(Exception):
    """A handler's clear, user-facing failure (becomes ``TOOL_EXECUTION_FAILED`` with this message)."""


def calculator(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"expression": args["expression"], "result": evaluate(args["expression"])}
    except CalculatorError as exc:
        raise ToolFailed(str(exc)) from exc


def current_time(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    name = args.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolFailed(f"Unknown time zone {name!r}.") from exc
    now = datetime.now(zone)
    return {"timezone": name, "iso": now.isoformat(), "weekday": now.strftime("%A")}


def search_history(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    from core.errors import SwitchboardError
    from history_app.search.backends import search_messages
    from history_app.search.query import parse_query
    from sessions_app.models import Message

    try:
        query = parse_query(args["query"])
    except SwitchboardError as exc:
        raise ToolFailed(exc.message) from exc
    page = search_messages(query, organization=ctx.organization, limit=int(args.get("limit") or 5))
    contents = dict(
        Message.objects.filter(pk__in=[hit.message_id for hit in page.hits]).values_list("pk", "content")
    )
    return {
        "query": args["query"],
        "results": [
            {
                "session": str(hit.session_id),
                "session_name": hit.session_name,
                "role": hit.role,
                "created_at": hit.created_at.isoformat(),
                "content": contents.get(hit.message_id, "")[:SEARCH_RESULT_CHARS],
            }
            for hit in page.hits
        ],
    }


# The python and shell tools' timeout: an execution's longest (300 s) and a little to wait for the chat
# session's execution session if another call holds it, and for the host to answer.
EXEC_TOOL_TIMEOUT_SECONDS = 310.0


def _exec_tool(mode: str):
    def run(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        from tools_app.services.exec_sessions import exec_session_execute, exec_session_for_chat

        if ctx.session is None:
            raise ToolFailed(f"The {mode} tool needs a chat session.")
        exec_session = exec_session_for_chat(ctx.session, mode, ctx.user)
        execution = exec_session_execute(
            exec_session,
            args["code"],
            timeout=args.get("timeout"),
            tool_call=ctx.tool_call,
            within=EXEC_TOOL_TIMEOUT_SECONDS,  # waiting for the session counts: nothing runs after it
        )
        return {
            "output": execution.output,
            "exit_code": execution.exit_code,
            "timed_out": execution.timed_out,
            "truncated": execution.truncated,
            "duration_ms": execution.duration_ms,
        }

    return run


def _exec_enabled() -> bool:
    return bool(getattr(settings, "ENABLE_EXEC_SESSIONS", False))


register(
    ToolSpec(
        name="calculator",
        description="Evaluate an arithmetic expression exactly (+ - * / // % **, sqrt, sin, log, ...).",
        parameters={
            "type": "object",
            "properties": {"expression": {"type": "string", "maxLength": 500}},
            "required": ["expression"],
            "additionalProperties": False,
        },
        handler=calculator,
        timeout=5,
        side_effect=SideEffect.READ_ONLY,
        default_policy="auto",
    )
)
register(
    ToolSpec(
        name="current_time",
        description="The current date and time, in a given IANA time zone (default UTC).",
        parameters={
            "type": "object",
            "properties": {"timezone": {"type": "string", "maxLength": 64}},
            "additionalProperties": False,
        },
        handler=current_time,
        timeout=5,
        side_effect=SideEffect.READ_ONLY,
        default_policy="auto",
    )
)
register(
    ToolSpec(
        name="search_history",
        description="Full-text search over this organization's past conversations.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 500},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        handler=search_history,
        timeout=15,
        side_effect=SideEffect.READ_ONLY,
        default_policy="auto",
    )
)
for _mode, _description in (
    ("python", "Run Python code in a persistent sandboxed interpreter."),
    ("shell", "Run a shell command in a persistent sandboxed bash session."),
):
    register(
        ToolSpec(
            name=_mode,
            description=_description + " State (variables, working directory) persists between calls.",
            parameters={
                "type": "object",
                "properties": {
                    "code": {"type": "string", "minLength": 1, "maxLength": 100_000},
                    "timeout": {"type": "number", "minimum": 1, "maximum": 300},
                },
                "required": ["code"],
                "additionalProperties": False,
            },
            handler=_exec_tool(_mode),
            timeout=EXEC_TOOL_TIMEOUT_SECONDS,
            side_effect=SideEffect.RUNS_CODE,
            default_policy="manual",
            requires=_exec_enabled,
        )
    )
