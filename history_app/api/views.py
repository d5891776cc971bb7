"""Bookmarks: each user sees and changes only their own."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from core.api.viewsets import TenantScopedViewSet
from core.errors import ErrorCode
from history_app.api.serializers import BookmarkSerializer, BookmarkUpdateSerializer
from history_app.models import Bookmark
from history_app.services import bookmark_create, bookmark_delete, bookmark_update


class BookmarkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = BookmarkSerializer
    model = Bookmark
    not_found_code = ErrorCode.BOOKMARK_NOT_FOUND
    filterset_fields = ["session", "message"]
    ordering = ["-created_at"]
    # Bookmarks are private notes: any member of the organization, viewers included, keeps their own.
    write_role = "viewer"

    def get_base_queryset(self):
        return Bookmark.objects.select_related("session").filter(user_id=self.access.user_id)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request.user if getattr(request.user, "pk", None) else None
        bookmark = bookmark_create(organization=self.organization, user=user, **serializer.validated_data)
        return Response(self.get_serializer(bookmark).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=BookmarkUpdateSerializer)
    def partial_update(self, request, *args, **kwargs):
        bookmark = self.get_object()
        serializer = BookmarkUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(self.get_serializer(bookmark_update(bookmark, **serializer.validated_data)).data)

    def destroy(self, request, *args, **kwargs):
        bookmark_delete(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
