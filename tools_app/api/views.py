"""Tool calls of the organization: the approvals inbox is ``?status=pending``."""

from __future__ import annotations

from rest_framework import mixins

from core.api.viewsets import TenantScopedViewSet
from core.errors import ErrorCode
from tools_app.api.serializers import ToolCallSerializer
from tools_app.models import ToolCall


class ToolCallViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = ToolCallSerializer
    model = ToolCall
    not_found_code = ErrorCode.TOOL_CALL_NOT_FOUND
    filterset_fields = ["status", "session", "tool_name"]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_base_queryset(self):
        return ToolCall.objects.select_related("decided_by")
