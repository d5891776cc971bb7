"""Tool calls: recording what the model asked, policy, human decisions and expiry (execution and the
answers back to the model are in :mod:`tools_app.services.tool_execution`).

A call's life: ``pending`` → ``approved`` | ``rejected`` → ``completed`` | ``failed``. Auto-approved
calls run at once; manual ones wait for a decision (REST, websocket or admin all call
:func:`tool_call_decide`) while the run waits in ``requires_action`` with no worker. An approval binds
to the hash of the exact arguments, and execution is marked started before the handler runs, so a side
effect runs at most once even if the worker dies and the run is retried. Every outcome goes back to
the model as a ``tool`` message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import jsonschema
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.access import Access
from core.errors import ErrorCode, SwitchboardError
from core.events import event_publish, org_approvals_group, push_live
from core.json_values import json_storable, json_unstorable
from core.metrics import metrics
from core.models import Role
from sessions_app.models import Message, MessageRole, Run, Session
from tools_app.models import ToolCall, ToolCallStatus
from tools_app.registry import ToolSpec, get_tool

logger = logging.getLogger(__name__)

DECIDED = (ToolCallStatus.APPROVED, ToolCallStatus.REJECTED, ToolCallStatus.COMPLETED, ToolCallStatus.FAILED)


def arguments_hash(arguments: Any) -> str:
    canonical = json.dumps(_as_stored(arguments), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _as_stored(value: Any) -> Any:
    """``value`` as a JSON column gives it back: PostgreSQL's ``jsonb`` stores numbers as decimals, so a
    float with an integral value comes back an integer (``1e16`` → ``10000000000000000``). Hashed this
    way, the arguments hash the same before and after they are stored (an approval binds to the hash)."""
    if isinstance(value, dict):
        return {key: _as_stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_stored(item) for item in value]
    if isinstance(value, float) and math.isfinite(value):
        exact = Decimal(repr(value))
        if exact == exact.to_integral_value():
            return int(exact)
    return value


def tool_call_snapshot(call: ToolCall) -> dict[str, Any]:
    return {
        "id": str(call.pk),
        "session": str(call.session_id),
        "run": str(call.run_id) if call.run_id else None,
        "tool_name": call.tool_name,
        "arguments": call.arguments,
        "status": call.status,
        "requires_approval": call.requires_approval,
        "result": call.result,
        "error_code": call.error_code or None,
        "error_message": call.error_message or None,
        "decided_by": getattr(call.decided_by, "username", None) if call.decided_by_id else None,
        "reason": call.reason or None,
        "expires_at": call.expires_at.isoformat().replace("+00:00", "Z") if call.expires_at else None,
    }


_FINAL_EVENTS = ("tool_call.completed", "tool_call.failed", "tool_call.rejected")


def _publish(call: ToolCall, event_type: str) -> None:
    """The event in the session's log, and the same envelope to the organization's approvals feed."""
    from core.events import event_envelope

    event = event_publish(call.session, event_type, tool_call_snapshot(call), run=call.run)
    if event_type in _FINAL_EVENTS:  # counted once, by the call's final status
        metrics.tool_calls.labels(tool=call.tool_name, status=call.status).inc()
    envelope = event_envelope(event)
    group = org_approvals_group(call.organization_id)
    transaction.on_commit(lambda: push_live(group, {"type": "approvals.event", "event": envelope}))


def approval_timeout(session: Session) -> timedelta:
    seconds = session.organization.approval_timeout_seconds or settings.APPROVAL_TIMEOUT_SECONDS
    return timedelta(seconds=seconds)


# --- recording -----------------------------------------------------------------------------------------


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse_arguments(spec: ToolSpec | None, raw: Any) -> tuple[dict[str, Any], SwitchboardError | None]:
    """The call's arguments, and what is wrong with them (then the call fails with that, and what was
    sent is kept, made storable, under ``_raw``)."""
    arguments = raw
    if isinstance(raw, str) or raw is None:
        try:
            arguments = json.loads(raw or "{}", parse_constant=_no_constant)
        except ValueError as exc:
            return {"_raw": json_storable(raw)}, SwitchboardError(
                ErrorCode.INVALID_TOOL_ARGS, f"Arguments are not JSON: {exc}"
            )
    if not isinstance(arguments, dict):
        return {"_raw": json_storable(arguments)}, SwitchboardError(
            ErrorCode.INVALID_TOOL_ARGS, "Arguments must be an object."
        )
    unstorable = json_unstorable(arguments)
    if unstorable is not None:
        return {"_raw": json_storable(arguments)}, SwitchboardError(
            ErrorCode.INVALID_TOOL_ARGS, f"Arguments may not contain {unstorable}."
        )
    if spec is not None:
        try:
            jsonschema.validate(arguments, spec.parameters)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            return arguments, SwitchboardError(ErrorCode.INVALID_TOOL_ARGS, f"{where}: {exc.message}")
    return arguments, None


def tool_call_create(
    *,
    session: Session,
    name: str,
    raw_arguments: str | dict,
    policy: str | None,
    run: Run | None = None,
    message: Message | None = None,
    call_id: str = "",
    user=None,
) -> ToolCall:
    """Record one call and apply the policy: auto → approved, manual → pending (expiring), deny/invalid →
    rejected/failed with the reason that goes back to the model."""
    spec = get_tool(name)
    arguments, error = _parse_arguments(spec, raw_arguments)
    call = ToolCall.objects.create(
        organization_id=session.organization_id,
        session=session,
        run=run,
        message=message,
        call_id=json_storable(call_id),
        # No tool has a longer name: a longer one is a call to no tool, kept cut to the column.
        tool_name=json_storable(name)[: ToolCall._meta.get_field("tool_name").max_length],
        arguments=arguments,
        arguments_hash=arguments_hash(arguments),
    )
    now = timezone.now()
    if spec is None or policy is None:
        _fail(call, SwitchboardError(ErrorCode.TOOL_NOT_FOUND, f"No tool named {name!r} is available."))
    elif error is not None:
        _fail(call, error)
    elif policy == "deny":
        call.status, call.reason, call.decided_at = ToolCallStatus.REJECTED, "Denied by policy.", now
        call.error_code = ErrorCode.TOOL_DENIED
        call.save()
        _publish(call, "tool_call.rejected")
    elif policy == "manual":
        call.requires_approval = True
        call.expires_at = now + approval_timeout(session)
        call.save(update_fields=["requires_approval", "expires_at"])
        _publish(call, "tool_call.pending")
    else:
        call.status, call.decided_at, call.approved_hash = ToolCallStatus.APPROVED, now, call.arguments_hash
        call.reason = "Approved automatically by policy."
        call.decided_by = user if call.run_id is None and getattr(user, "pk", None) else None
        call.save()
        _publish(call, "tool_call.approved")
    return call


def _fail(call: ToolCall, error: SwitchboardError) -> None:
    call.status = ToolCallStatus.FAILED
    call.error_code, call.error_message = error.code.value, json_storable(error.message)
    call.completed_at = timezone.now()
    call.save()
    _publish(call, "tool_call.failed")


# --- decisions -----------------------------------------------------------------------------------------


def check_may_decide(access: Access, session: Session) -> None:
    """The session's owner and organization admins decide; viewers and keys without ``approve`` do not."""
    if not access.may_approve():
        raise SwitchboardError(ErrorCode.PERMISSION_DENIED, "You may not approve or reject tool calls.")
    if access.has_role(Role.ADMIN) or (access.user_id is not None and session.owner_id == access.user_id):
        return
    raise SwitchboardError(
        ErrorCode.PERMISSION_DENIED, "Only the session's owner or an organization admin can decide this call."
    )


def _lock_for_decision(pk) -> ToolCall:
    """Lock the call's run (if any), then the call: the order a cancel takes them in (run, then its
    calls), so a decision and a cancel of the same run wait for each other instead of deadlocking."""
    run_id = ToolCall.objects.filter(pk=pk).values_list("run_id", flat=True).get()
    if run_id is not None:
        list(Run.objects.select_for_update().filter(pk=run_id).values_list("pk", flat=True))
    return ToolCall.objects.select_for_update(of=("self",)).select_related("session", "run").get(pk=pk)


def tool_call_decide(call: ToolCall, *, approve: bool, access: Access, reason: str = "") -> ToolCall:
    """Approve or reject a pending call (row lock). Deciding twice is harmless: the first decision stands.

    When it was the run's last pending call, the run is re-enqueued; a direct task is enqueued to run.
    """
    from tools_app.policies import call_allowed_now

    check_may_decide(access, call.session)
    with transaction.atomic():
        call = _lock_for_decision(call.pk)
        if call.status != ToolCallStatus.PENDING:
            return call
        now = timezone.now()
        if call.expires_at is not None and call.expires_at <= now:  # before the expiry task came by
            _expire(call)
            return call
        if approve and not call_allowed_now(call):  # the tool was disabled or denied while the call waited
            call.status, call.decided_at = ToolCallStatus.REJECTED, now
            call.error_code = ErrorCode.TOOL_DENIED
            call.reason = "The tool was disabled or denied after the call was made."
            call.save()
            _publish(call, "tool_call.rejected")
            _after_decision(call)
            return call
        call.status = ToolCallStatus.APPROVED if approve else ToolCallStatus.REJECTED
        call.decided_by = access.user if getattr(access.user, "pk", None) else None
        call.decided_at = now
        call.reason = (reason or "")[:2000]
        if approve:
            call.approved_hash = call.arguments_hash
        call.save()
        _publish(call, "tool_call.approved" if approve else "tool_call.rejected")
        _after_decision(call)
    return call


def _expire(call: ToolCall) -> None:
    """A pending call past its deadline (locked) fails with ``APPROVAL_TIMEOUT``; its run continues."""
    _fail(call, SwitchboardError(ErrorCode.APPROVAL_TIMEOUT, "Nobody decided in time; the call was not run."))
    _after_decision(call)


def _after_decision(call: ToolCall) -> None:
    from sessions_app.services.runs import run_requeue
    from tools_app.services.tool_execution import tool_call_answer

    if call.run_id is None:  # a direct task: run it, or put its refusal on the session's record
        if call.status == ToolCallStatus.APPROVED:
            tool_call_dispatch(call)
        else:
            tool_call_answer(call)
        return
    if not ToolCall.objects.filter(run_id=call.run_id, status=ToolCallStatus.PENDING).exists():
        run_requeue(call.run)


def direct_task_create(
    session: Session, *, name: str, arguments: Any, user=None, may_run_code: bool = False
) -> ToolCall:
    """A person runs a tool without the model, under the same policy: auto runs it on the queue, manual
    waits for a decision, and a refusal (denied, invalid arguments) is answered in the session at once.

    ``may_run_code``: the caller is an organization admin. Tools that run code (``python``, ``shell``)
    use execution sessions, which only admins may use directly; others get ``PERMISSION_DENIED``."""
    from sessions_app.services.lifecycle import session_check_usable
    from tools_app.policies import policy_for_direct_task
    from tools_app.registry import SideEffect
    from tools_app.services.tool_execution import tool_call_answer

    session_check_usable(session)
    spec, policy = policy_for_direct_task(name, session)
    if spec is None:
        raise SwitchboardError(ErrorCode.TOOL_NOT_FOUND, f"No tool named {name!r}.")
    if not spec.available():  # the tools that need execution sessions, while they are off
        raise SwitchboardError(
            ErrorCode.EXEC_SESSIONS_DISABLED,
            f"The {name} tool needs execution sessions, which are disabled on this server.",
            {"tool": name},
        )
    if spec.side_effect == SideEffect.RUNS_CODE and not may_run_code:
        raise SwitchboardError(
            ErrorCode.PERMISSION_DENIED,
            f"Only organization admins may run the {name} tool directly.",
            {"tool": name, "required_role": "admin"},
        )
    with transaction.atomic():
        call = tool_call_create(session=session, name=name, raw_arguments=arguments, policy=policy, user=user)
        if call.status == ToolCallStatus.APPROVED:
            tool_call_dispatch(call)
        elif call.status != ToolCallStatus.PENDING:
            tool_call_answer(call)
    return call


def direct_tasks_settle_ended(session: Session) -> None:
    """The session ended: its direct tasks still waiting for a decision are rejected, and approved ones
    that have not started fail; each is answered in the session. (One already running finishes.) Call
    inside the transaction that ends the session."""
    from tools_app.services.tool_execution import tool_call_answer

    waiting = ToolCall.objects.select_for_update(of=("self",)).select_related("session", "run")
    waiting = waiting.filter(
        session=session,
        run__isnull=True,
        status__in=[ToolCallStatus.PENDING, ToolCallStatus.APPROVED],
        started_at__isnull=True,
    )
    for call in waiting.order_by("created_at"):
        if call.status == ToolCallStatus.PENDING:  # not a decision: nobody decided, the session ended
            call.status, call.reason = ToolCallStatus.REJECTED, "The session ended."
            call.save(update_fields=["status", "reason"])
            _publish(call, "tool_call.rejected")
        else:
            _fail(call, SwitchboardError(ErrorCode.TOOL_EXECUTION_FAILED, "The session ended before it ran."))
        tool_call_answer(call)


def tool_call_dispatch(call: ToolCall) -> None:
    """Run a direct task's approved call on the queue, after commit."""
    from core.queue import enqueue

    call_id, org_id = str(call.pk), call.organization_id
    transaction.on_commit(lambda: enqueue("tools_app.tasks.tool_call_execute_task", call_id, org_id))


def tool_calls_expire() -> int:
    """Pending calls past their deadline fail with ``APPROVAL_TIMEOUT``; their runs continue with that."""
    from core.tenancy import tenant_context

    expired = list(
        ToolCall.all_tenants_unsafe.select_related("organization").filter(
            status=ToolCallStatus.PENDING, expires_at__lt=timezone.now()
        )
    )
    for stale in expired:
        with tenant_context(stale.organization), transaction.atomic():
            call = _lock_for_decision(stale.pk)
            if call.status == ToolCallStatus.PENDING:
                _expire(call)
    return len(expired)


def direct_tasks_reap() -> int:
    """Approved direct tasks whose queue task was lost are dispatched again (scheduled, every
    organization): one never started within ``2 × RUN_LEASE_SECONDS`` of its approval (a task lost on
    the way), or one started longer ago than its tool's timeout and that lease (its worker died; the
    task then fails it, since a started call is never run twice, and answers it in the session). A
    direct task has no run and so no lease of its own: without this it would stay ``approved`` for good.
    Dispatching twice is harmless: the start is marked under the call's row lock."""
    from core.tenancy import tenant_context

    now = timezone.now()
    grace = timedelta(seconds=2 * settings.RUN_LEASE_SECONDS)
    approved = ToolCall.all_tenants_unsafe.select_related("organization").filter(
        run__isnull=True, status=ToolCallStatus.APPROVED
    )
    never_started = approved.filter(started_at__isnull=True, decided_at__lt=now - grace)
    started = approved.filter(started_at__lt=now - grace)
    lost = list(never_started) + [
        call
        for call in started
        if call.started_at < now - grace - timedelta(seconds=_timeout_of(call.tool_name))
    ]
    for call in lost:
        with tenant_context(call.organization), transaction.atomic():
            tool_call_dispatch(call)
    return len(lost)


def _timeout_of(tool_name: str) -> float:
    spec = get_tool(tool_name)
    return spec.timeout if spec is not None else 0.0


def tool_calls_settle_cancelled(run: Run) -> None:
    """The run was cancelled: its pending calls are rejected, approved ones that did not complete fail,
    and every call gets its ``tool`` answer. Call inside the transaction holding the run's lock."""
    from tools_app.services.tool_execution import tool_call_answer

    calls = ToolCall.objects.select_for_update(of=("self",)).select_related("session", "run").filter(run=run)
    for call in calls.filter(status__in=[ToolCallStatus.PENDING, ToolCallStatus.APPROVED]):
        if call.status == ToolCallStatus.PENDING:
            # Not a decision: nobody decided (no decided_at), the run ended first.
            call.status, call.reason = ToolCallStatus.REJECTED, "The run was cancelled."
            call.save(update_fields=["status", "reason"])
            _publish(call, "tool_call.rejected")
        else:
            cancelled = "The run was cancelled; the call did not complete."
            _fail(call, SwitchboardError(ErrorCode.TOOL_EXECUTION_FAILED, cancelled))
    answered = Message.objects.filter(tool_call__run=run, role=MessageRole.TOOL).values("tool_call_id")
    for call in calls.exclude(pk__in=answered).order_by("created_at"):
        tool_call_answer(call)
