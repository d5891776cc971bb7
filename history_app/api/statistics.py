"""Statistics of one session and of the organization."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from core.api.viewsets import SessionChildViewSet, TenantScopedViewSet
from core.errors import ErrorCode
from history_app.statistics import organization_statistics, parse_range, session_statistics
from sessions_app.models import Session


class SessionStatisticsViewSet(SessionChildViewSet):
    model = Session
    tenant_field = "organization"
    not_found_code = ErrorCode.SESSION_NOT_FOUND
    pagination_class = None
    filter_backends: list = []

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def list(self, request, *args, **kwargs):
        return Response(session_statistics(self.get_session()))


class OrganizationStatisticsViewSet(TenantScopedViewSet):
    model = Session
    not_found_code = ErrorCode.NOT_FOUND
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since", OpenApiTypes.STR, description="Date or date-time (default: 30 days ago)."
            ),
            OpenApiParameter(
                "until", OpenApiTypes.STR, description="Date (inclusive) or date-time (default: now)."
            ),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def list(self, request, *args, **kwargs):
        period = parse_range(request.query_params.get("since"), request.query_params.get("until"))
        return Response(organization_statistics(self.organization, period))
