from django.contrib import admin

from core.admin_base import TenantScopedAdmin
from tools_app.models import ToolCall


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
    raw_id_fields = ["session", "message", "run", "decided_by"]
    readonly_fields = ["arguments_hash", "approved_hash", "created_at"]
