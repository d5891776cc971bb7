"""Tool calls in the browser: the organization's approvals inbox, a call's card, and decisions."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import ErrorCode, SwitchboardError, not_found
from core.models import Role
from tools_app.services.tool_calls import tool_call_decide
from web import selectors
from web.access import back_url, org_view


@require_GET
@org_view(min_role=Role.MEMBER)
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    calls = selectors.pending_approvals()
    rows = [
        {"call": call, "can_decide": selectors.may_decide(request.access, call.session)} for call in calls
    ]
    return render(request, "web/approvals.html", {"nav": "approvals", "rows": rows})


def _call_or_404(call_id):
    call = selectors.tool_call_by_id(call_id)
    if call is None:
        raise not_found(ErrorCode.TOOL_CALL_NOT_FOUND, "Tool call")
    return call


def card_response(request: HttpRequest, call) -> HttpResponse:
    inbox = request.GET.get("inbox") == "1"
    context = {
        "call": call,
        "session": call.session,
        "can_decide": selectors.may_decide(request.access, call.session),
        "inbox": inbox,
    }
    return render(request, "web/chat/_tool_call.html", context)


@require_GET
@org_view()
def tool_call_card(request: HttpRequest, call_id) -> HttpResponse:
    return card_response(request, _call_or_404(call_id))


@require_POST
@org_view(min_role=Role.MEMBER)
def tool_call_decision(request: HttpRequest, call_id) -> HttpResponse:
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject"):
        raise SwitchboardError(ErrorCode.VALIDATION_ERROR, "Choose approve or reject.")
    call = tool_call_decide(
        _call_or_404(call_id),
        approve=decision == "approve",
        access=request.access,
        reason=request.POST.get("reason", ""),
    )
    if request.htmx:
        return card_response(request, selectors.tool_call_by_id(call.pk))
    messages.success(request, f"{call.tool_name}: {call.get_status_display().lower()}.")
    return redirect(back_url(request, reverse("web:chat", args=[request.organization.slug, call.session_id])))
