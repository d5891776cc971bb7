"""The OpenAPI schema and the API docs page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders


def test_schema_is_an_openapi_3_document(db, client):
    r = client.get("/api/schema/?format=json")
    assert r.status_code == 200, r.content[:300]
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Switchboard API"
    paths = schema["paths"]
    for path in [
        "/api/v1/me/",
        "/api/v1/orgs/{org_slug}/",
        "/api/v1/orgs/{org_slug}/sessions/",
        "/api/v1/orgs/{org_slug}/sessions/{id}/activate/",
        "/api/v1/orgs/{org_slug}/sessions/{session_id}/messages/",
        "/api/v1/orgs/{org_slug}/sessions/{session_id}/events/",
        "/api/v1/orgs/{org_slug}/api-keys/",
        "/api/v1/orgs/{org_slug}/members/{id}/",
    ]:
        assert path in paths, path
    assert "ApiKeyAuth" in schema["components"]["securitySchemes"]
    # Filters are documented from the filter sets (built without a tenant in context).
    session_list = {p["name"] for p in paths["/api/v1/orgs/{org_slug}/sessions/"]["get"]["parameters"]}
    assert {
        "status",
        "agent",
        "tag",
        "owner",
        "created_after",
        "created_before",
        "q",
        "cursor",
    } <= session_list


def test_schema_generation_has_no_warnings_or_errors():
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", os.devnull],
        cwd=Path(settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr[-4000:]


def test_docs_page_uses_only_local_assets(db, client):
    r = client.get("/api/docs/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    html = r.content.decode()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    references += re.findall(r"""["']((?:https?:)?//[^"']+)["']""", html)
    assert references
    external = [ref for ref in references if ref.startswith(("http:", "https:", "//"))]
    assert not external, external
    assert "cdn" not in html.lower()
    static = [ref for ref in references if ref.startswith("/" + settings.STATIC_URL.strip("/") + "/")]
    assert static, references
    for ref in static:
        relative = ref.split("/" + settings.STATIC_URL.strip("/") + "/", 1)[1].split("?")[0]
        assert finders.find(relative), ref
