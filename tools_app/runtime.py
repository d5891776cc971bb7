"""The tools side of a run, called by the run executor (sessions_app.runtime.executor)."""

from __future__ import annotations

from collections.abc import Callable

from sessions_app.models import Message, Run, Session
from sessions_app.runtime.providers import ToolCallRequest
from tools_app.models import ToolCall, ToolCallStatus
from tools_app.policies import tools_for_run
from tools_app.services.tool_calls import tool_call_create
from tools_app.services.tool_execution import ToolAbandoned, tool_call_answer, tool_call_execute


def tool_specs(session: Session, agent) -> list[dict]:
    """The tools offered to the model, in OpenAI's format."""
    return [spec.openai_spec() for spec, _policy in tools_for_run(session, agent).values()]


def tool_calls_process(
    run: Run, message: Message, calls: list[ToolCallRequest], cancelled: Callable[[], bool] | None = None
) -> str:
    """Record the calls the model asked for in ``message``, then answer what can be answered now
    (``cancelled``: as for :func:`tool_calls_resume`)."""
    tool_calls_record(run, message, calls)
    return tool_calls_resume(run, cancelled)


def tool_calls_record(run: Run, message: Message, calls: list[ToolCallRequest]) -> None:
    """Record the calls the model asked for in ``message`` that are not recorded yet: all of them, or
    after a worker was lost while recording them (the reply with its calls was already stored), the
    rest. Every call of a stored reply must get a row, and so an answer: a call left without one makes
    every later model request of the session malformed."""
    recorded = set(ToolCall.objects.filter(run=run, message=message).values_list("call_id", flat=True))
    offered = tools_for_run(run.session, run.session.agent)
    for request in calls:
        if request.id in recorded:
            continue
        spec_policy = offered.get(request.name)
        tool_call_create(
            session=run.session,
            name=request.name,
            raw_arguments=request.arguments,
            policy=spec_policy[1] if spec_policy else None,
            run=run,
            message=message,
            call_id=request.id,
        )


def tool_calls_resume(run: Run, cancelled: Callable[[], bool] | None = None) -> str:
    """Execute approved calls and answer every decided call of the run that has no answer yet.

    ``requires_action`` while any call still waits for a person; ``cancelled`` if the run was cancelled
    while a tool ran (the worker stopped waiting for it); ``continue`` otherwise. ``cancelled()`` is
    called while a tool runs (the worker's :class:`~sessions_app.services.runs.RunWatch`, which also
    renews the run's lease).
    """
    calls = list(ToolCall.objects.filter(run=run).select_related("session").order_by("created_at"))
    if any(c.status == ToolCallStatus.PENDING for c in calls):
        return "requires_action"
    answered = set(Message.objects.filter(tool_call__in=calls).values_list("tool_call_id", flat=True))
    for call in calls:
        if call.pk in answered:
            continue
        if call.status == ToolCallStatus.APPROVED:
            try:
                call = tool_call_execute(call, cancelled=cancelled)
            except ToolAbandoned:
                return "cancelled"
        tool_call_answer(call)
    return "continue"
