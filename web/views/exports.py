"""Download one session in the history app's export formats (the same names as the API's ``?format=``)."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from core.errors import ErrorCode, SwitchboardError, not_found
from history_app import formats
from web import selectors
from web.access import org_view

FORMATS = {
    "jsonl": ("application/x-ndjson", "jsonl", lambda s: "".join(formats.sessions_jsonl([s], 1))),
    "json": (
        "application/json",
        "json",
        lambda s: json.dumps(formats.session_json(s), ensure_ascii=False, indent=2),
    ),
    "md": ("text/markdown; charset=utf-8", "md", formats.session_markdown),
    "csv": ("text/csv; charset=utf-8", "csv", formats.session_csv),
}


@require_GET
@org_view()
def session_export(request: HttpRequest, session_id) -> HttpResponse:
    session = selectors.get_session(session_id)
    if session is None:
        raise not_found(ErrorCode.SESSION_NOT_FOUND, "Session")
    kind = request.GET.get("format", "jsonl")
    if kind not in FORMATS:
        raise SwitchboardError(ErrorCode.VALIDATION_ERROR, f"Unknown export format {kind!r}.")
    content_type, extension, render = FORMATS[kind]
    # Built in full here, inside the tenant context (a streamed body would run after the view returns).
    body = render(session)
    name = f"{slugify(session.name)[:60] or 'session'}-{str(session.pk)[:8]}.{extension}"
    response = HttpResponse(body.encode("utf-8"), content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response
