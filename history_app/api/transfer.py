"""Export of one session (Markdown, JSON, JSONL, CSV), many-session exports on the queue, and imports."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.access import get_object_in_org
from core.api.viewsets import SessionChildViewSet, TenantScopedViewSet
from core.errors import ErrorCode, SwitchboardError, not_found
from history_app.api.serializers import ExportSerializer, ImportSerializer
from history_app.filters import HISTORY_FILTER_PARAMS
from history_app.formats import session_csv, session_json, session_markdown, sessions_jsonl
from history_app.models import Export, ExportStatus
from history_app.services.exports import export_create, export_filters
from history_app.services.imports import import_sessions
from sessions_app.models import Session

# format -> (content type, file extension)
SESSION_FORMATS = {
    "md": ("text/markdown; charset=utf-8", "md"),
    "json": ("application/json", "json"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "csv": ("text/csv; charset=utf-8", "csv"),
}


class IgnoreFormatParameter:
    """``?format=`` picks the export format here, not one of DRF's renderers; errors stay JSON."""

    def perform_content_negotiation(self, request, force=False):
        renderer = self.get_renderers()[0]
        return renderer, renderer.media_type


def _download_name(session: Session, extension: str) -> str:
    stem = slugify(session.name)[:60] or "session"
    return f"{stem}-{str(session.pk)[:8]}.{extension}"


class SessionExportViewSet(IgnoreFormatParameter, SessionChildViewSet):
    """``GET sessions/<id>/export/?format=md|json|jsonl|csv``: the session as a file."""

    model = Session
    not_found_code = ErrorCode.SESSION_NOT_FOUND
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=list(SESSION_FORMATS), default="jsonl")
        ],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def list(self, request, *args, **kwargs):
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in SESSION_FORMATS:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR,
                f"Unknown export format {fmt!r}.",
                {"format": [f"Choose one of {', '.join(SESSION_FORMATS)}."]},
            )
        session = (
            Session.objects.select_related("agent", "owner")
            .prefetch_related("tags")
            .get(pk=self.get_session().pk)
        )
        if fmt == "md":
            body = session_markdown(session)
        elif fmt == "json":
            body = json.dumps(session_json(session), ensure_ascii=False, indent=2) + "\n"
        elif fmt == "csv":
            body = session_csv(session)
        else:
            body = "".join(sessions_jsonl([session], 1))
        content_type, extension = SESSION_FORMATS[fmt]
        response = HttpResponse(body.encode("utf-8"), content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(True, _download_name(session, extension))
        return response


class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Many-session JSONL exports: create with history filters, watch progress, download when done."""

    serializer_class = ExportSerializer
    model = Export
    not_found_code = ErrorCode.NOT_FOUND
    not_found_what = "Export"
    filter_backends: list = []
    ordering = ["-created_at"]

    def get_base_queryset(self):
        return Export.objects.select_related("created_by", "organization")

    def get_object(self):
        return get_object_in_org(
            Export, self.organization, self.kwargs.get("pk"), ErrorCode.NOT_FOUND, "Export"
        )

    @extend_schema(request=OpenApiTypes.OBJECT, responses={202: ExportSerializer})
    def create(self, request, *args, **kwargs):
        data = request.data if hasattr(request.data, "get") else {}
        raw = data.get("filters", None)
        if raw is None:
            raw = {k: (data.getlist(k) if hasattr(data, "getlist") else data[k]) for k in data}
        if not isinstance(raw, dict):
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR, "filters must be an object.", {"filters": ["Not an object."]}
            )
        unknown = sorted(set(raw) - HISTORY_FILTER_PARAMS)
        if unknown:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR,
                "Unknown filters.",
                {
                    key: [f"Not a history filter; use {', '.join(sorted(HISTORY_FILTER_PARAMS))}."]
                    for key in unknown
                },
            )
        user = request.user if getattr(request.user, "pk", None) else None
        export = export_create(organization=self.organization, created_by=user, filters=export_filters(raw))
        return Response(self.get_serializer(export).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/x-ndjson"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, *args, **kwargs):
        export = self.get_object()
        if export.status != ExportStatus.COMPLETED or not export.file:
            raise SwitchboardError(
                ErrorCode.INVALID_STATE,
                f"The export is {export.status}; it can be downloaded when it has completed.",
                {"status": export.status, "progress": export.progress, "total": export.total},
            )
        try:
            handle = export.file.open("rb")
        except FileNotFoundError:
            raise not_found(ErrorCode.NOT_FOUND, "Export file") from None
        stamp = timezone.localtime(export.created_at).strftime("%Y%m%d-%H%M%S")
        return FileResponse(
            handle,
            as_attachment=True,
            filename=f"switchboard-export-{stamp}.jsonl",
            content_type="application/x-ndjson",
        )


class ImportViewSet(TenantScopedViewSet):
    """``POST imports/`` with a JSONL ``file``: new sessions in this organization, all or nothing."""

    model = Session
    not_found_code = ErrorCode.NOT_FOUND
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ImportSerializer
    filter_backends: list = []
    pagination_class = None

    @extend_schema(request=ImportSerializer, responses={201: OpenApiTypes.OBJECT})
    def create(self, request, *args, **kwargs):
        upload = request.FILES.get("file")
        if upload is None:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR,
                "Attach the JSONL file as 'file'.",
                {"file": ["No file was submitted."]},
            )
        limit = settings.IMPORT_MAX_BYTES
        if upload.size > limit:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR,
                f"The file is larger than the {limit}-byte import limit.",
                {"size": upload.size, "limit": limit},
            )
        importer = request.user if getattr(request.user, "pk", None) else None
        sessions = import_sessions(upload.read(), organization=self.organization, importer=importer)
        return Response(
            {
                "count": len(sessions),
                "sessions": [
                    {
                        "id": str(s.pk),
                        "name": s.name,
                        "messages": s.last_message_seq,
                        "events": s.last_event_seq,
                    }
                    for s in sessions
                ],
            },
            status=status.HTTP_201_CREATED,
        )
