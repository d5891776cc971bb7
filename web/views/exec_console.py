"""The execution-session console for organization admins (only when ``ENABLE_EXEC_SESSIONS`` is on):
start a shell or Python session, run code in it, read its log, stop it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.errors import ErrorCode, not_found
from core.models import Role
from tools_app.execution import DRIVERS
from tools_app.models import ExecSession, Execution
from tools_app.services.exec_sessions import (
    exec_session_execute,
    exec_session_start,
    exec_session_stop,
    exec_sessions_require_enabled,
)
from web.access import org_view
from web.selectors import parse_uuid

LOG_LIMIT = 200


def _exec_session(exec_id) -> ExecSession:
    pk = parse_uuid(exec_id)
    row = ExecSession.objects.select_related("created_by").filter(pk=pk).first() if pk else None
    if row is None:
        raise not_found(ErrorCode.EXEC_SESSION_NOT_FOUND, "Execution session")
    return row


@org_view(min_role=Role.ADMIN)
def exec_list(request: HttpRequest) -> HttpResponse:
    exec_sessions_require_enabled()
    if request.method == "POST":
        row = exec_session_start(
            organization=request.organization, mode=request.POST.get("mode", ""), created_by=request.user
        )
        return redirect("web:exec-detail", request.organization.slug, row.pk)
    rows = ExecSession.objects.select_related("created_by").order_by("-started_at")[:100]
    return render(request, "web/exec/list.html", {"nav": "exec", "rows": rows, "modes": sorted(DRIVERS)})


@org_view(min_role=Role.ADMIN)
def exec_detail(request: HttpRequest, exec_id) -> HttpResponse:
    exec_sessions_require_enabled()
    row = _exec_session(exec_id)
    if request.method == "POST":
        execution = exec_session_execute(row, request.POST.get("code", ""))
        if request.htmx:
            return render(request, "web/exec/_execution.html", {"e": execution})
        return redirect("web:exec-detail", request.organization.slug, row.pk)
    executions = list(Execution.objects.filter(exec_session=row).order_by("-number")[:LOG_LIMIT])[::-1]
    return render(request, "web/exec/detail.html", {"nav": "exec", "row": row, "executions": executions})


@require_POST
@org_view(min_role=Role.ADMIN)
def exec_stop(request: HttpRequest, exec_id) -> HttpResponse:
    exec_sessions_require_enabled()
    exec_session_stop(_exec_session(exec_id), reason="user")
    return redirect("web:exec-detail", request.organization.slug, exec_id)
