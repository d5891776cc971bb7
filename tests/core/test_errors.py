"""Every API error has the catalogue's shape: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import uuid

import pytest
from django.db import OperationalError
from django.http import HttpResponse
from django.urls import include, path

import config.urls
from core.errors import STATUS, ErrorCode, SwitchboardError
from tests.support.assertions import assert_error


def _boom(request):
    raise RuntimeError("secret internals: password=hunter2")


def _ok(request):
    return HttpResponse("ok")


# A test-only URLconf: the real API plus plain Django views that fail outside DRF.
urlpatterns = [
    path("api/boom/", _boom),
    path("boom/", _boom),
    path("ok/", _ok),
    path("", include("config.urls")),
]
handler404 = config.urls.handler404
handler500 = config.urls.handler500


def test_every_code_has_a_status():
    assert set(STATUS) == set(ErrorCode)
    assert SwitchboardError(ErrorCode.SESSION_EXPIRED, "x").status == 410


def test_unauthenticated(world, client_for):
    r = client_for().get(world.a.url("sessions/"))
    assert_error(r, 401, "AUTHENTICATION_REQUIRED")
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_unauthenticated_on_an_unknown_organization_is_still_401(world, client_for):
    # Not 404: an anonymous caller learns nothing about which organizations exist.
    assert_error(client_for().get("/api/v1/orgs/no-such-org/sessions/"), 401, "AUTHENTICATION_REQUIRED")
    assert_error(client_for().get(world.a.url()), 401, "AUTHENTICATION_REQUIRED")


def test_permission_denied(world, client_for):
    error = assert_error(
        client_for(world.a.viewer).post(world.a.url("sessions/"), {"agent": "helper"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert error["details"] == {"required_role": "member", "role": "viewer"}


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("sessions/{uuid}/", "SESSION_NOT_FOUND"),
        ("sessions/{uuid}/messages/", "SESSION_NOT_FOUND"),
        ("sessions/{uuid}/events/", "SESSION_NOT_FOUND"),
        ("sessions/{session}/messages/{uuid}/", "MESSAGE_NOT_FOUND"),
        ("agents/{uuid}/", "AGENT_NOT_FOUND"),
        ("tags/999999/", "TAG_NOT_FOUND"),
        ("templates/{uuid}/", "TEMPLATE_NOT_FOUND"),
        ("bookmarks/{uuid}/", "BOOKMARK_NOT_FOUND"),
        ("api-keys/{uuid}/", "API_KEY_NOT_FOUND"),
        ("members/999999/", "MEMBER_NOT_FOUND"),
        ("tool-calls/{uuid}/", "TOOL_CALL_NOT_FOUND"),
    ],
)
def test_not_found_codes_are_model_specific(world, client_for, path, code):
    url = world.a.url(path.format(uuid=uuid.uuid4(), session=world.a.session.pk))
    assert_error(client_for(world.a.owner).get(url), 404, code)


def test_unknown_organization(world, client_for):
    assert_error(client_for(world.a.owner).get("/api/v1/orgs/nope/sessions/"), 404, "ORGANIZATION_NOT_FOUND")


@pytest.mark.parametrize("url", ["/api/v1/nothing-here/", "/api/v1/orgs/acme/nothing-here/", "/api/nope"])
def test_unknown_api_url_is_json(world, client_for, url):
    assert_error(client_for(world.a.owner).get(url), 404, "NOT_FOUND")


def test_unknown_site_url_is_not_json(world, client_for):
    r = client_for(world.a.owner).get("/definitely-not-a-page/")
    assert r.status_code == 404
    assert not r.headers["Content-Type"].startswith("application/json")


def test_method_not_allowed(world, client_for):
    r = client_for(world.a.owner).put(world.a.url(f"sessions/{world.a.session.pk}/"), {}, format="json")
    assert_error(r, 405, "METHOD_NOT_ALLOWED")


def test_unsupported_media_type(world, client_for):
    r = client_for(world.a.member).post(world.a.url("sessions/"), "agent=helper", content_type="text/plain")
    assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_not_acceptable(world, client_for):
    r = client_for(world.a.member).get(world.a.url("sessions/"), HTTP_ACCEPT="application/xml")
    assert r.status_code == 406
    assert r.json()["error"]["code"] == "NOT_ACCEPTABLE"


def test_validation_error_names_each_field(world, client_for):
    r = client_for(world.a.admin).post(
        world.a.url("agents/"), {"name": "", "slug": "bad slug", "max_context_messages": 0}, format="json"
    )
    error = assert_error(r, 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"name", "slug", "max_context_messages"}
    assert all(isinstance(v, list) and v for v in error["details"].values())


def test_malformed_json(world, client_for):
    r = client_for(world.a.member).post(
        world.a.url("sessions/"), '{"agent": "helper",', content_type="application/json"
    )
    error = assert_error(r, 400, "VALIDATION_ERROR")
    assert "JSON" in error["message"]


def test_json_that_is_not_an_object(world, client_for):
    r = client_for(world.a.member).post(world.a.url("sessions/"), "[1, 2]", content_type="application/json")
    assert_error(r, 400, "VALIDATION_ERROR")


def test_unexpected_exception_is_500_without_a_traceback(world, client_for, monkeypatch):
    from sessions_app.services import lifecycle

    def explode(session):
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(lifecycle, "session_activate", explode)
    r = client_for(world.a.member).post(world.a.url(f"sessions/{world.a.session.pk}/activate/"))
    error = assert_error(r, 500, "INTERNAL_ERROR")
    assert error["details"] == {}
    text = r.content.decode()
    assert "Traceback" not in text and "hunter2" not in text and "RuntimeError" not in text


def test_database_error_is_503(world, client_for, monkeypatch):
    from sessions_app.services import lifecycle

    def unavailable(session):
        raise OperationalError("could not connect: secret-host")

    monkeypatch.setattr(lifecycle, "session_end", unavailable)
    r = client_for(world.a.member).post(world.a.url(f"sessions/{world.a.session.pk}/end/"))
    assert_error(r, 503, "DATABASE_ERROR")
    assert "secret-host" not in r.content.decode()


def test_exception_outside_drf_under_api_is_json_500(world, client, settings):
    settings.ROOT_URLCONF = __name__
    client.raise_request_exception = False
    assert client.get("/ok/").status_code == 200  # the test URLconf is in use
    r = client.get("/api/boom/")
    assert_error(r, 500, "INTERNAL_ERROR")
    assert "hunter2" not in r.content.decode() and "Traceback" not in r.content.decode()
    page = client.get("/boom/")
    assert page.status_code == 500
    assert b"hunter2" not in page.content
