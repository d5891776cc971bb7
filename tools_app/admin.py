from django.contrib import admin, messages

from core.access import Access
from core.admin_base import TenantScopedAdmin, TenantScopedTabularInline
from core.errors import SwitchboardError
from core.models import Membership, Role
from core.tenancy import tenant_context
from tools_app.models import ExecSession, ExecSessionStatus, Execution, ToolCall, ToolCallStatus, ToolPolicy
from tools_app.services.exec_sessions import exec_session_stop
from tools_app.services.tool_calls import tool_call_decide


@admin.register(ToolCall)
class ToolCallAdmin(TenantScopedAdmin):
    list_display = [
        "tool_name",
        "session",
        "organization",
        "status",
        "requires_approval",
        "decided_by",
        "decided_at",
        "created_at",
    ]
    list_filter = ["status", "tool_name", "requires_approval"]
    search_fields = ["tool_name", "session__id", "call_id"]
    actions = ["approve_calls", "reject_calls"]

    # Every field of a call is state the runtime acts on: a status set by hand re-enqueues nothing (the
    # run waits forever), and an edited tool name or arguments would run something nobody approved.
    # So the page only shows a call; decisions go through the actions, which use the decision service.
    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in ToolCall._meta.fields]

    def has_add_permission(self, request, *args) -> bool:
        return False  # calls come from runs and the API

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # view only: the change form cannot be saved (the actions need no change permission)

    def has_delete_permission(self, request, obj=None) -> bool:
        # A call waiting for a decision or a worker is part of a run that waits for it: deleting it would
        # leave the run waiting for good. (Ending or cancelling settles it first.)
        waiting = obj is not None and obj.status in (ToolCallStatus.PENDING, ToolCallStatus.APPROVED)
        return not waiting and super().has_delete_permission(request, obj)

    @admin.action(description="Approve the selected pending tool calls")
    def approve_calls(self, request, queryset):
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject the selected pending tool calls")
    def reject_calls(self, request, queryset):
        self._decide(request, queryset, approve=False)

    def _decide(self, request, queryset, *, approve: bool) -> None:
        """Through the one decision service, as the staff user acting in each call's organization."""
        decided = 0
        for call in queryset.filter(status=ToolCallStatus.PENDING).select_related("organization"):
            membership = Membership.all_tenants_unsafe.filter(
                organization=call.organization, user=request.user
            ).first()
            role = membership.role if membership else (Role.OWNER if request.user.is_superuser else None)
            access = Access(organization=call.organization, role=role, user=request.user)
            reason = f"{'Approved' if approve else 'Rejected'} in the admin by {request.user.get_username()}."
            try:
                with tenant_context(call.organization):
                    tool_call_decide(call, approve=approve, access=access, reason=reason)
                decided += 1
            except SwitchboardError as exc:
                self.message_user(request, f"{call}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{'Approved' if approve else 'Rejected'} {decided} tool call(s).")


class ExecutionInline(TenantScopedTabularInline):
    model = Execution
    can_delete = False
    show_change_link = False
    fields = ["number", "code", "output", "exit_code", "timed_out", "truncated", "context_lost", "started_at"]
    readonly_fields = [*fields, "duration_ms"]
    ordering = ["number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ExecSession)
class ExecSessionAdmin(TenantScopedAdmin):
    list_display = [
        "__str__",
        "organization",
        "mode",
        "status",
        "created_by",
        "host",
        "started_at",
        "stopped_at",
    ]
    list_filter = ["status", "mode", "sandboxed"]
    search_fields = ["id", "session__id", "created_by__username"]
    date_hierarchy = "started_at"
    inlines = [ExecutionInline]
    actions = ["stop"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in ExecSession._meta.fields]

    def has_add_permission(self, request, *args) -> bool:
        return False  # sessions start through the API or the python/shell tools

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a running row would leave its processes to the reaper: stop it first.
        if obj is not None and obj.status == ExecSessionStatus.RUNNING:
            return False
        return super().has_delete_permission(request, obj)

    @admin.action(description="Stop the selected execution sessions")
    def stop(self, request, queryset):
        stopped = 0
        for exec_session in queryset.filter(status=ExecSessionStatus.RUNNING):
            try:
                exec_session_stop(exec_session, reason="admin")
                stopped += 1
            except SwitchboardError as exc:
                self.message_user(request, f"{exec_session}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Stopped {stopped} execution session(s).")


@admin.register(ToolPolicy)
class ToolPolicyAdmin(TenantScopedAdmin):
    """An organization's setting for one tool: enabled, and ``auto`` / ``manual`` / ``deny``."""

    list_display = ["tool_name", "organization", "enabled", "policy", "updated_at"]
    list_filter = ["enabled", "policy"]
    search_fields = ["tool_name"]
