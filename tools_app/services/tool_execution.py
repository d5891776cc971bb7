"""Executing approved tool calls at most once, and answering every call back to the model.

Execution is marked started before the handler runs (row lock), so a side effect runs at most once
even if the worker dies and the run is retried; what runs is what was approved (the arguments' hash).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import ErrorCode, SwitchboardError
from core.metrics import metrics
from sessions_app.models import Message, MessageRole
from sessions_app.services.messages import message_append
from sessions_app.services.runs import CANCEL_CHECK_SECONDS
from tools_app.models import ToolCall, ToolCallStatus
from tools_app.policies import call_allowed_now
from tools_app.registry import ToolContext, ToolSpec, get_tool
from tools_app.services.tool_calls import _fail, _publish, arguments_hash, json_storable

logger = logging.getLogger(__name__)


class ToolAbandoned(Exception):
    """The run was cancelled while one of its tools ran: the worker stopped waiting for the tool.

    The call stays approved and unfinished; settling the cancelled run fails it and answers it. A handler
    cannot be stopped from outside its thread: it finishes in the background within its own timeout
    (an execution in a sandbox is still recorded when it ends), and what it returns is not used.
    """


def tool_call_execute(
    call: ToolCall,
    user=None,
    cancelled: Callable[[], bool] | None = None,
) -> ToolCall:
    """Run an approved call's handler once, with its timeout. Marks the start first (row lock): a call
    found started but unfinished (its worker died) is failed, never run a second time. ``cancelled`` is
    called every ``CANCEL_CHECK_SECONDS`` while the handler runs (the run executor's watch: it renews the
    run's lease, which a tool may outlast, and looks for a cancel); once it is true,
    :class:`ToolAbandoned` is raised."""
    with transaction.atomic():
        call = ToolCall.objects.select_for_update(of=("self",)).select_related("session").get(pk=call.pk)
        if call.status != ToolCallStatus.APPROVED:
            return call
        if call.started_at is not None:
            _fail(
                call,
                SwitchboardError(
                    ErrorCode.TOOL_EXECUTION_FAILED,
                    "The worker stopped while this call ran; it is not run twice.",
                ),
            )
            return call
        if call.approved_hash != arguments_hash(call.arguments):
            _fail(
                call,
                SwitchboardError(
                    ErrorCode.APPROVAL_REJECTED, "The arguments changed after approval; the call was not run."
                ),
            )
            return call
        if not call_allowed_now(call):
            denied = "The tool was disabled or denied before the call ran."
            _fail(call, SwitchboardError(ErrorCode.TOOL_DENIED, denied))
            return call
        call.started_at = timezone.now()
        call.save(update_fields=["started_at"])
    spec = get_tool(call.tool_name)
    started = time.monotonic()
    try:
        context = ToolContext(call.session.organization, call.session, call, user)
        result = _run_with_timeout(spec, context, call.arguments, cancelled)
    except SwitchboardError as error:
        with transaction.atomic():
            _fail(call, error)
        return call
    finally:
        metrics.tool_seconds.labels(tool=call.tool_name).observe(time.monotonic() - started)
    with transaction.atomic():
        call.status, call.result, call.completed_at = ToolCallStatus.COMPLETED, result, timezone.now()
        call.save(update_fields=["status", "result", "completed_at"])
        _publish(call, "tool_call.completed")
    return call


def _run_with_timeout(
    spec: ToolSpec,
    ctx: ToolContext,
    arguments: dict[str, Any],
    cancelled: Callable[[], bool] | None = None,
) -> Any:
    from tools_app.builtin.tools import ToolFailed

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = spec.handler(ctx, arguments)
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    from core.tenancy import tenant_context

    def scoped() -> None:
        with tenant_context(ctx.organization):
            try:
                target()
            finally:
                from django.db import connection

                connection.close()

    thread = threading.Thread(target=scoped, daemon=True, name=f"tool-{spec.name}")
    thread.start()
    deadline = time.monotonic() + spec.timeout
    wake = CANCEL_CHECK_SECONDS if cancelled is not None else spec.timeout
    while thread.is_alive() and (remaining := deadline - time.monotonic()) > 0:
        thread.join(min(remaining, wake))
        if thread.is_alive() and cancelled is not None and cancelled():
            raise ToolAbandoned(spec.name)
    if thread.is_alive():
        raise SwitchboardError(
            ErrorCode.TOOL_TIMEOUT, f"{spec.name} did not finish within {spec.timeout:g} s."
        )
    error = outcome.get("error")
    if isinstance(error, SwitchboardError):
        raise error
    if isinstance(error, ToolFailed):
        raise SwitchboardError(ErrorCode.TOOL_EXECUTION_FAILED, str(error))
    if error is not None:
        logger.warning("tool %s raised", spec.name, exc_info=error)
        raise SwitchboardError(ErrorCode.TOOL_EXECUTION_FAILED, f"{spec.name} failed: {type(error).__name__}")
    # Stored as JSON: made plain, and storable whatever the tool returned (a NUL character in its output).
    return json_storable(json.loads(json.dumps(outcome.get("result"), default=str)))


def tool_result_text(call: ToolCall) -> str:
    """What the model reads back for a call."""
    if call.status == ToolCallStatus.COMPLETED:
        return json.dumps(call.result, ensure_ascii=False, default=str)
    if call.status == ToolCallStatus.REJECTED:
        why = f" Reason: {call.reason}" if call.reason else ""
        return json.dumps(
            {
                "error": {
                    "code": call.error_code or ErrorCode.APPROVAL_REJECTED.value,
                    "message": f"The call was rejected.{why}",
                }
            }
        )
    return json.dumps({"error": {"code": call.error_code, "message": call.error_message}}, ensure_ascii=False)


def tool_call_answer(call: ToolCall) -> Message:
    """Append the ``tool`` message carrying the call's outcome; once per call."""
    existing = Message.objects.filter(tool_call=call, role=MessageRole.TOOL).first()
    if existing is not None:
        return existing
    return message_append(
        call.session,
        role=MessageRole.TOOL,
        content=tool_result_text(call),
        run=call.run,
        tool_call=call,
        metadata={"tool_call_id": call.call_id, "tool_name": call.tool_name},
    )
