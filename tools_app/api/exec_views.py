"""Execution sessions under ``/api/v1/orgs/<org_slug>/exec-sessions/``: organization admins only, and only
when ``ENABLE_EXEC_SESSIONS`` is on (otherwise every endpoint answers ``EXEC_SESSIONS_DISABLED``)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.viewsets import TenantScopedViewSet
from core.errors import ErrorCode, SwitchboardError
from core.models import Role
from tools_app.api.exec_serializers import (
    ExecSessionSerializer,
    ExecSessionStartSerializer,
    ExecutionRequestSerializer,
    ExecutionSerializer,
)
from tools_app.models import ExecSession, Execution
from tools_app.services.exec_sessions import (
    exec_session_execute,
    exec_session_start,
    exec_session_stop,
    exec_sessions_require_enabled,
)

LOGS_PAGE_MAX = 500


class ExecSessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = ExecSessionSerializer
    model = ExecSession
    not_found_code = ErrorCode.EXEC_SESSION_NOT_FOUND
    not_found_what = "Execution session"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    filterset_fields = ["status", "mode", "session"]
    ordering_fields = ["started_at", "last_used_at"]
    ordering = ["-started_at"]

    def check_role(self) -> None:
        # Members of the organization learn that the feature is off before anything else.
        exec_sessions_require_enabled()
        super().check_role()

    def get_base_queryset(self):
        return ExecSession.objects.select_related("created_by")

    def _user(self):
        return self.request.user if getattr(self.request.user, "pk", None) else None

    @extend_schema(request=ExecSessionStartSerializer, responses={201: ExecSessionSerializer})
    def create(self, request, *args, **kwargs):
        serializer = ExecSessionStartSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        exec_session = exec_session_start(
            organization=self.organization,
            mode=data["mode"],
            created_by=self._user(),
            session=data.get("session"),
            ttl_seconds=data.get("ttl_seconds"),
            idle_timeout_seconds=data.get("idle_timeout_seconds"),
        )
        return Response(self.get_serializer(exec_session).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ExecutionRequestSerializer, responses={201: ExecutionSerializer})
    @action(detail=True, methods=["post"], url_path="exec")
    def execute(self, request, *args, **kwargs):
        """Run code in the session; a timeout is reported in the result (``timed_out``), not as an error."""
        exec_session = self.get_object()
        serializer = ExecutionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        execution = exec_session_execute(
            exec_session, serializer.validated_data["code"], timeout=serializer.validated_data.get("timeout")
        )
        return Response(ExecutionSerializer(execution).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ExecSessionSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, *args, **kwargs):
        """Stop the session and every process it started; stopping twice is harmless."""
        exec_session = exec_session_stop(self.get_object(), reason="user")
        return Response(self.get_serializer(exec_session).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("since", OpenApiTypes.INT, description="Last number seen (default 0)."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many (1-500)."),
        ],
        responses={
            200: inline_serializer(
                "ExecSessionLogs",
                {
                    "executions": ExecutionSerializer(many=True),
                    "last_number": serializers.IntegerField(),
                    "has_more": serializers.BooleanField(),
                },
            )
        },
    )
    @action(detail=True, methods=["get"])
    def logs(self, request, *args, **kwargs):
        """The session's executions after number ``since``, oldest first."""
        exec_session = self.get_object()
        try:
            since = int(request.query_params.get("since", 0))
            limit = int(request.query_params.get("limit", 100))
        except ValueError:
            raise SwitchboardError(ErrorCode.VALIDATION_ERROR, "since and limit must be integers.") from None
        if since < 0 or not 1 <= limit <= LOGS_PAGE_MAX:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR, f"since must be >= 0 and limit 1-{LOGS_PAGE_MAX}."
            )
        after = Execution.objects.filter(exec_session=exec_session, number__gt=since).order_by("number")
        rows = list(after[: limit + 1])
        page = rows[:limit]
        return Response(
            {
                "executions": ExecutionSerializer(page, many=True).data,
                "last_number": page[-1].number if page else since,
                "has_more": len(rows) > limit,
            }
        )
