"""Queue tasks of the tools app. Tasks carry ids only and set the tenant context first."""

from __future__ import annotations

from core.models import Organization
from core.tenancy import tenant_context


def tool_call_execute_task(tool_call_id: str, organization_id: int) -> None:
    """Run an approved direct task (a tool a person ran without the model) and answer it in the session."""
    from tools_app.models import ToolCall
    from tools_app.services.tool_execution import tool_call_answer, tool_call_execute

    with tenant_context(Organization.objects.get(pk=organization_id)):
        call = ToolCall.objects.select_related("session").get(pk=tool_call_id)
        call = tool_call_execute(call, user=call.decided_by)
        tool_call_answer(call)


def tool_calls_expire() -> int:
    from tools_app.services.tool_calls import tool_calls_expire as expire

    return expire()


def direct_tasks_reap() -> int:
    from tools_app.services.tool_calls import direct_tasks_reap as reap

    return reap()


def exec_sessions_reap():
    from tools_app.services.exec_sessions import exec_sessions_reap as reap

    return reap()
