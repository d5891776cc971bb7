"""The history list and full-text search."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from core.api.viewsets import TenantScopedViewSet
from core.errors import ErrorCode, SwitchboardError
from history_app.api.serializers import SearchHitSerializer, SearchQuerySerializer
from history_app.filters import HISTORY_FILTER_PARAMS, HistoryFilter
from history_app.models import Bookmark
from history_app.search import parse_query, search_messages
from sessions_app.api.serializers import SessionSerializer
from sessions_app.models import Message, Session


class HistorySessionSerializer(SessionSerializer):
    bookmarked = serializers.BooleanField(read_only=True, help_text="The caller has bookmarked it.")
    message_count = serializers.IntegerField(source="last_message_seq", read_only=True)

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "bookmarked", "message_count"]
        read_only_fields = fields


class HistoryViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The organization's sessions as the caller sees them: newest first, with every history filter."""

    serializer_class = HistorySessionSerializer
    model = Session
    not_found_code = ErrorCode.SESSION_NOT_FOUND
    not_found_what = "Session"
    filterset_class = HistoryFilter
    ordering_fields = ["created_at", "last_activity_at"]
    ordering = ["-created_at"]

    def get_base_queryset(self):
        mine = Bookmark.objects.filter(session=OuterRef("pk"), user_id=self.access.user_id)
        return (
            Session.objects.select_related("agent", "owner")
            .prefetch_related("tags")
            .annotate(bookmarked=Exists(mine))
        )


SEARCH_PARAMETERS = [
    OpenApiParameter("q", OpenApiTypes.STR, required=True, description='Words, "phrases", -excluded.'),
    OpenApiParameter("role", OpenApiTypes.STR, many=True, description="Message roles to search."),
    OpenApiParameter("limit", OpenApiTypes.INT, description="Results per page (1-100, 20)."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Results to skip."),
    OpenApiParameter("name", OpenApiTypes.STR, description="Text in the session's name."),
]


class SearchViewSet(TenantScopedViewSet):
    """Full-text search over the organization's messages, best match first, with the history filters."""

    model = Message
    not_found_code = ErrorCode.MESSAGE_NOT_FOUND
    serializer_class = SearchHitSerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(parameters=SEARCH_PARAMETERS, responses={200: SearchHitSerializer(many=True)})
    def list(self, request, *args, **kwargs):
        params = request.query_params
        form = SearchQuerySerializer(
            data={
                "q": params.get("q", ""),
                "role": params.getlist("role"),
                "limit": params.get("limit", 20),
                "offset": params.get("offset", 0),
            }
        )
        form.is_valid(raise_exception=True)
        query = parse_query(form.validated_data["q"])
        page = search_messages(
            query,
            organization=self.organization,
            sessions=self._sessions(params),
            roles=sorted(form.validated_data.get("role") or []),
            limit=form.validated_data["limit"],
            offset=form.validated_data["offset"],
        )
        url = request.build_absolute_uri()
        next_url = previous_url = None
        if page.has_more:
            next_url = replace_query_param(url, "offset", page.offset + page.limit)
        if page.offset > 0:
            previous = max(0, page.offset - page.limit)
            previous_url = (
                replace_query_param(url, "offset", previous)
                if previous
                else remove_query_param(url, "offset")
            )
        return Response(
            {
                "next": next_url,
                "previous": previous_url,
                "offset": page.offset,
                "limit": page.limit,
                "approximate": page.approximate,
                "results": SearchHitSerializer(page.hits, many=True).data,
            }
        )

    def _sessions(self, params):
        """The sessions the history filters select, or None when no filter is given (no subquery)."""
        # Here ``q`` is the search text, not the name filter (that one is ``name``).
        data = params.copy()
        data.pop("q", None)
        if not any(key in HISTORY_FILTER_PARAMS for key in data):
            return None
        filterset = HistoryFilter(data=data, queryset=Session.objects.all(), request=self.request)
        if not filterset.is_valid():
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR, "The filters are not valid.", dict(filterset.errors)
            )
        return filterset.qs
