"""A message's attachments: listed with their analysis, downloaded one by one."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.response import Response

from core.access import get_object_in_org
from core.api.viewsets import SessionChildViewSet
from core.errors import ErrorCode, not_found
from history_app.api.serializers import AttachmentSerializer
from sessions_app.models import Attachment, Message


class AttachmentViewSet(mixins.ListModelMixin, SessionChildViewSet):
    """``sessions/<id>/messages/<message_id>/attachments/[<id>/]``; the detail is the file itself."""

    serializer_class = AttachmentSerializer
    model = Attachment
    not_found_code = ErrorCode.NOT_FOUND
    not_found_what = "Attachment"
    pagination_class = None
    filter_backends: list = []

    def get_message(self) -> Message:
        if not hasattr(self, "_message"):
            message = get_object_in_org(
                Message,
                self.organization,
                self.kwargs.get("message_id"),
                ErrorCode.MESSAGE_NOT_FOUND,
                "Message",
            )
            if message.session_id != self.get_session().pk:
                raise not_found(ErrorCode.MESSAGE_NOT_FOUND, "Message")
            self._message = message
        return self._message

    def get_base_queryset(self):
        return Attachment.objects.filter(message=self.get_message()).order_by("created_at", "id")

    def list(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_queryset(), many=True).data)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def retrieve(self, request, *args, **kwargs):
        message = self.get_message()
        attachment = get_object_in_org(
            Attachment, self.organization, kwargs.get("pk"), ErrorCode.NOT_FOUND, "Attachment"
        )
        if attachment.message_id != message.pk:
            raise not_found(ErrorCode.NOT_FOUND, "Attachment")
        try:
            handle = attachment.file.open("rb")
        except FileNotFoundError:
            raise not_found(ErrorCode.NOT_FOUND, "Attachment file") from None
        return FileResponse(
            handle, as_attachment=True, filename=attachment.filename, content_type=attachment.content_type
        )
