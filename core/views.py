"""Site-level views: health and Prometheus metrics."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse

from core.errors import ErrorCode, error_body


def metrics_view(request):
    """``/metrics`` for Prometheus: ``Authorization: Bearer <METRICS_TOKEN>``, or a staff login."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from core.metrics import render_metrics

    header = request.headers.get("Authorization", "")
    token_ok = bool(settings.METRICS_TOKEN) and secrets.compare_digest(
        header.encode(), f"Bearer {settings.METRICS_TOKEN}".encode()
    )
    if not token_ok and not (request.user.is_authenticated and request.user.is_staff):
        return JsonResponse(
            error_body(ErrorCode.AUTHENTICATION_REQUIRED, "Metrics need a token or staff login."), status=401
        )
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)


def health_view(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
