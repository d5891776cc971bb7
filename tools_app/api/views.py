"""Tools, tool policies, tool calls (the approvals inbox is ``?status=pending``) and direct tasks."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.viewsets import SessionChildViewSet, TenantScopedViewSet
from core.errors import ErrorCode, SwitchboardError
from core.models import Role
from sessions_app.api.views import check_session_write
from tools_app.api.serializers import (
    DecisionSerializer,
    DirectTaskSerializer,
    ToolCallSerializer,
    ToolPolicySerializer,
    ToolSerializer,
)
from tools_app.models import ToolCall, ToolPolicy
from tools_app.policies import organization_tools
from tools_app.registry import all_tools, get_tool
from tools_app.services.tool_calls import direct_task_create, tool_call_decide


class ToolCallViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = ToolCallSerializer
    model = ToolCall
    not_found_code = ErrorCode.TOOL_CALL_NOT_FOUND
    filterset_fields = ["status", "session", "tool_name", "requires_approval"]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    # Deciding is checked by the service (owner or admin, and an API key's approve scope).
    action_roles = {"approve": Role.VIEWER, "reject": Role.VIEWER}

    def get_base_queryset(self):
        return ToolCall.objects.select_related("decided_by", "session")

    def _decide(self, request, approve: bool):
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        call = tool_call_decide(
            self.get_object(),
            approve=approve,
            access=self.access,
            reason=serializer.validated_data.get("reason", ""),
        )
        return Response(self.get_serializer(call).data)

    @extend_schema(request=DecisionSerializer, responses=ToolCallSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, *args, **kwargs):
        return self._decide(request, True)

    @extend_schema(request=DecisionSerializer, responses=ToolCallSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, *args, **kwargs):
        return self._decide(request, False)


class ToolViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The tools the organization can use, with their schemas and effective organization policy."""

    serializer_class = ToolSerializer
    model = ToolPolicy
    pagination_class = None
    filter_backends: list = []

    def list(self, request, *args, **kwargs):
        usable = {spec.name: policy for spec, policy in organization_tools()}
        items = [
            {**spec.describe(), "enabled": spec.name in usable, "policy": usable.get(spec.name, "deny")}
            for spec in all_tools()
            if spec.available()
        ]
        return Response(self.get_serializer(items, many=True).data)


class ToolPolicyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet
):
    """Per-organization tool settings (enabled, policy); admins change them. PUT-style upsert by name."""

    serializer_class = ToolPolicySerializer
    model = ToolPolicy
    write_role = Role.ADMIN
    pagination_class = None
    ordering = ["tool_name"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if get_tool(data["tool_name"]) is None:
            raise SwitchboardError(ErrorCode.TOOL_NOT_FOUND, f"No tool named {data['tool_name']!r}.")
        policy, _ = ToolPolicy.objects.update_or_create(
            organization=self.organization,
            tool_name=data["tool_name"],
            defaults={"enabled": data.get("enabled", True), "policy": data.get("policy", "")},
        )
        return Response(self.get_serializer(policy).data, status=status.HTTP_201_CREATED)


class DirectTaskViewSet(SessionChildViewSet):
    """``POST .../sessions/<id>/tasks``: a person runs a tool without the model, under the same policy."""

    serializer_class = DirectTaskSerializer
    model = ToolCall
    not_found_code = ErrorCode.TOOL_CALL_NOT_FOUND

    @extend_schema(request=DirectTaskSerializer, responses={201: ToolCallSerializer, 202: ToolCallSerializer})
    def create(self, request, *args, **kwargs):
        session = self.get_session()
        check_session_write(self.access, session)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        call = direct_task_create(
            session,
            name=data["tool"],
            arguments=data.get("arguments") or {},
            user=request.user if getattr(request.user, "pk", None) else None,
            may_run_code=self.access.has_role(Role.ADMIN),
        )
        body = ToolCallSerializer(call).data
        return Response(
            body,
            status=status.HTTP_202_ACCEPTED
            if call.status in ("approved", "pending")
            else status.HTTP_201_CREATED,
        )
