"""Inputs and clients that used to get a 500 (or a wrong answer) from the API's shared machinery."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DataError
from django.test import Client
from django.test.client import encode_multipart
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from core.api.pagination import DefaultCursorPagination
from core.tenancy import tenant_context
from sessions_app.models import Message, Session
from sessions_app.services.lifecycle import session_create
from tests.support.assertions import assert_error
from tests.support.runtime import task_queue_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


# --- the browsable API ------------------------------------------------------------------------------------


LIST_PATHS = [
    "sessions/",
    "sessions/{session}/messages/",
    "agents/",
    "tool-calls/",
    "tags/",
    "bookmarks/",
    "members/",
    "api-keys/",
]


@pytest.mark.parametrize("path", LIST_PATHS)
def test_the_browsable_api_renders_list_endpoints(world, path):
    """Its filter form queries the rows while the page renders: that is inside the tenant context too."""
    client = Client(raise_request_exception=False)
    client.force_login(world.a.admin)
    r = client.get(world.a.url(path.format(session=world.a.session.pk)), HTTP_ACCEPT="text/html")
    assert r.status_code == 200, r.content[:300]
    assert r["Content-Type"].startswith("text/html")
    html = r.content.decode()
    assert world.b.session.name not in html and str(world.b.session.pk) not in html


def test_the_browsable_api_lists_this_organizations_sessions_only(world):
    client = Client(raise_request_exception=False)
    client.force_login(world.a.admin)
    html = client.get(world.a.url("sessions/"), HTTP_ACCEPT="text/html").content.decode()
    assert str(world.a.session.pk) in html
    assert str(world.b.session.pk) not in html


# --- request bodies past Django's in-memory limit ---------------------------------------------------------


def messages_url(tenant) -> str:
    return tenant.url(f"sessions/{tenant.session.pk}/messages/")


@pytest.mark.usefixtures("task_queue")
@pytest.mark.parametrize("key", [None, "big-json"])
def test_a_json_body_over_the_upload_limit_is_a_413(world, client_for, settings, key):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    body = json.dumps({"content": "x" * 200_000})
    r = client_for(world.a.member).post(
        messages_url(world.a), body, content_type="application/json", **headers
    )
    error = assert_error(r, 413, "MESSAGE_TOO_LONG")
    assert error["details"] == {"limit": 100_000}
    with tenant_context(world.a.org):
        assert not Message.objects.filter(session=world.a.session).exists()


def test_too_many_form_fields_is_a_validation_error(world, client_for, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    fields = {f"f{i}": "x" for i in range(10)}
    r = client_for(world.a.member).post(
        messages_url(world.a), {"content": "hi", **fields}, format="multipart"
    )
    assert_error(r, 400, "VALIDATION_ERROR")


def test_the_upload_limit_holds_a_message_of_the_longest_length_in_any_json_encoding(settings):
    # ensure_ascii JSON (Python's default) writes an astral character as a 12-byte surrogate pair escape.
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= settings.MESSAGE_MAX_CHARS * 12 + 1000


@pytest.mark.usefixtures("task_queue")
def test_a_message_of_the_longest_length_escaped_is_accepted(world, client_for, settings):
    body = json.dumps({"content": "\U0001f600" * settings.MESSAGE_MAX_CHARS})  # \ud83d\ude00 each
    assert len(body) > settings.MESSAGE_MAX_CHARS * 12
    r = client_for(world.a.member).post(
        messages_url(world.a), body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="longest"
    )
    assert r.status_code == 201, r.content[:300]


def big_csv(fill: bytes = b"a") -> SimpleUploadedFile:
    return SimpleUploadedFile("big.csv", (fill + b",b\n") * 750_000, content_type="text/csv")  # 3 MB


@pytest.mark.usefixtures("task_queue")
def test_an_upload_over_the_memory_limit_with_an_idempotency_key_is_created_and_replayed(world, client_for):
    client = client_for(world.a.member)

    def post(upload, boundary: str = "BoUnDaRy"):
        payload = encode_multipart(boundary, {"content": "the numbers", "files": [upload]})
        return client.post(
            messages_url(world.a),
            payload,
            content_type=f"multipart/form-data; boundary={boundary}",
            HTTP_IDEMPOTENCY_KEY="upload-1",
        )

    first = post(big_csv())
    assert first.status_code == 201, first.content[:300]
    [attachment] = first.json()["message"]["attachments"]
    assert attachment["size"] == 3_000_000
    # A retry is the same request even with another multipart boundary: it is replayed, not run again.
    again = post(big_csv(), boundary="another-boundary")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    with tenant_context(world.a.org):
        assert Message.objects.filter(session=world.a.session).count() == 1
    # Another file under the same key is another request.
    assert_error(post(big_csv(b"z")), 422, "IDEMPOTENCY_KEY_REUSED")


# --- JSON input the database cannot store -----------------------------------------------------------------


def session_metadata(tenant):
    with tenant_context(tenant.org):
        return Session.objects.get(pk=tenant.session.pk).metadata


@pytest.mark.parametrize(
    "metadata",
    [{"note": "a\u0000b"}, {"a\u0000": 1}, {"deep": [{"x": ["ok", "\u0000"]}]}],
    ids=["value", "key", "nested"],
)
def test_a_nul_character_in_session_metadata_is_a_validation_error(world, client_for, metadata):
    client = client_for(world.a.member)
    created = client.post(world.a.url("sessions/"), {"agent": "helper", "metadata": metadata}, format="json")
    error = assert_error(created, 400, "VALIDATION_ERROR")
    assert error["details"] == {"metadata": ["Must not contain a NUL character."]}
    patched = client.patch(
        world.a.url(f"sessions/{world.a.session.pk}/"), {"metadata": metadata}, format="json"
    )
    assert assert_error(patched, 400, "VALIDATION_ERROR")["details"] == error["details"]
    assert session_metadata(world.a) == {}
    # A NUL written as an escape is just text.
    ok = client.patch(
        world.a.url(f"sessions/{world.a.session.pk}/"), {"metadata": {"n": "\\u0000"}}, format="json"
    )
    assert ok.status_code == 200 and session_metadata(world.a) == {"n": "\\u0000"}


@pytest.mark.parametrize("config", [{"model\u0000": "m"}, {"model": "m\u0000"}], ids=["key", "value"])
def test_a_nul_character_in_a_config_is_a_validation_error(world, client_for, config):
    client = client_for(world.a.admin)
    for r in (
        client.post(world.a.url("sessions/"), {"agent": "helper", "config": config}, format="json"),
        client.patch(world.a.url(f"sessions/{world.a.session.pk}/"), {"config": config}, format="json"),
        client.post(world.a.url("templates/"), {"name": "t", "config": config}, format="json"),
    ):
        error = assert_error(r, 400, "VALIDATION_ERROR")
        assert set(error["details"]) == {"config"}


@pytest.mark.usefixtures("task_queue")
def test_a_keyed_request_whose_error_echoes_a_nul_character_is_recorded(world, client_for):
    """The idempotency record keeps what PostgreSQL can store of the response."""
    client = client_for(world.a.member)
    body = {"agent": "helper", "config": {"bogus\u0000": 1}}
    first = client.post(world.a.url("sessions/"), body, format="json", HTTP_IDEMPOTENCY_KEY="nul")
    assert_error(first, 400, "VALIDATION_ERROR")
    again = client.post(world.a.url("sessions/"), body, format="json", HTTP_IDEMPOTENCY_KEY="nul")
    assert again.status_code == 400 and again["Idempotent-Replayed"] == "true"


def test_a_database_data_error_is_a_validation_error_not_an_outage(world, client_for, monkeypatch):
    from sessions_app.services import lifecycle

    def refuse(**kwargs):
        raise DataError("invalid input syntax: unsupported Unicode escape sequence")

    monkeypatch.setattr(lifecycle, "session_create", refuse)
    r = client_for(world.a.member).post(world.a.url("sessions/"), {"agent": "helper"}, format="json")
    error = assert_error(r, 400, "VALIDATION_ERROR")
    assert "unsupported" not in error["message"]  # what the database said stays in the log


# --- session list filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"owner": "²"},
        {"owner": "٣"},
        {"owner": "99999999999999999999999"},
        {"owner": str(2**63)},
        {"owner": "1" * 5000},  # past the digits int() converts
        {"created_after": "9999-12-31T23:59:59-05:00"},
        {"created_before": "9999-12-31T23:59:59-05:00"},
        {"created_after": "0001-01-01T00:00:00+05:00"},
        {"created_before": "0001-01-01T00:00:00+05:00"},
        {"tag": ["\u0000", "red"]},
    ],
    ids=lambda q: "&".join(f"{k}={v}"[:40] for k, v in q.items()),
)
@pytest.mark.parametrize("endpoint", ["sessions/", "history/"])
def test_out_of_range_or_malformed_session_filters_are_validation_errors(world, client_for, endpoint, query):
    r = client_for(world.a.member).get(world.a.url(endpoint), query)
    error = assert_error(r, 400, "VALIDATION_ERROR")
    assert set(error["details"]) == set(query)


@pytest.mark.parametrize("name", ["active_after", "active_before"])
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_out_of_range_history_activity_filters_are_validation_errors(world, client_for, name, value):
    r = client_for(world.a.member).get(world.a.url("history/"), {name: value})
    assert set(assert_error(r, 400, "VALIDATION_ERROR")["details"]) == {name}


def test_session_filters_at_the_edges_of_the_range_still_work(world, client_for):
    client = client_for(world.a.member)

    def ids(query) -> list[str]:
        r = client.get(world.a.url("sessions/"), query)
        assert r.status_code == 200, r.content[:300]
        return [row["id"] for row in r.json()["results"]]

    mine = [str(world.a.session.pk)]
    assert ids({"owner": str(world.a.member.pk)}) == mine
    assert ids({"owner": str(2**63 - 1)}) == []
    assert ids({"owner": "someone"}) == ids({"owner": "-1"}) == []  # a name of nobody
    assert ids({"created_after": "9999-12-31T23:59:59+00:00"}) == []
    assert ids({"created_before": "9999-12-31T18:59:59-05:00"}) == mine
    assert ids({"created_after": "0001-01-01T00:00:00Z"}) == mine
    assert ids({"created_after": "0001-01-01T03:00:00+02:00"}) == mine


def test_owner_me_for_a_key_without_a_creator_is_nobodys_sessions(world, client_for):
    from core.api_keys import api_key_issue

    with tenant_context(world.a.org):
        session_create(organization=world.a.org, agent=world.a.agent, owner=None, name="imported")
    secret = api_key_issue(organization=world.a.org, name="bot", scopes=["read"], created_by=None).secret
    r = client_for(key=secret).get(world.a.url("sessions/"), {"owner": "me"})
    assert r.status_code == 200 and r.json()["results"] == []


# --- cursor pagination ------------------------------------------------------------------------------------


def walk(ordering: str, queryset, page_size: int = 1) -> list:
    """Every page of ``queryset`` by following the next links; the rows in the order read."""

    class Paginator(DefaultCursorPagination):
        pass

    Paginator.ordering = ordering
    url, rows = f"/items/?page_size={page_size}", []
    for _ in range(100):
        paginator = Paginator()
        page = paginator.paginate_queryset(queryset, Request(APIRequestFactory().get(url)))
        rows += page
        url = paginator.get_next_link()
        if url is None:
            return rows
    raise AssertionError("the pages never end")


def test_cursor_pages_reach_every_row_when_the_ordering_field_is_null_for_some(world):
    base = timezone.now()
    with tenant_context(world.a.org):
        sessions = [world.a.session] + [
            session_create(organization=world.a.org, agent=world.a.agent, name=f"s{i}") for i in range(5)
        ]
        for i, session in enumerate(sessions[:3]):  # three ended, three not (ended_at null)
            Session.objects.filter(pk=session.pk).update(ended_at=base + timedelta(minutes=i))
        queryset = Session.objects.all()
        ended, open_ = [s.pk for s in sessions[:3]], {s.pk for s in sessions[3:]}
        oldest_first = [s.pk for s in walk("ended_at", queryset)]
        newest_first = [s.pk for s in walk("-ended_at", queryset)]
        for page_size in (2, 4):
            assert [s.pk for s in walk("ended_at", queryset, page_size)] == oldest_first
    # Never ended sorts as the earliest: first oldest-first, last newest-first.
    assert set(oldest_first[:3]) == open_ and oldest_first[3:] == ended
    assert newest_first[:3] == ended[::-1] and set(newest_first[3:]) == open_
    assert newest_first == oldest_first[::-1]


def test_cursor_pages_reach_every_row_when_many_tie(world):
    with tenant_context(world.a.org):
        for i in range(6):
            session_create(organization=world.a.org, agent=world.a.agent, name=f"tie{i}")
        Session.objects.update(created_at=timezone.now())
        queryset = Session.objects.all()
        rows = [s.pk for s in walk("-created_at", queryset, page_size=2)]
    assert len(rows) == len(set(rows)) == 7


def test_a_key_whose_creator_was_deleted_may_not_make_sessions_it_could_not_use(world, client_for):
    """Its sessions would have no owner, and below admin nobody-but-admins may post to an ownerless one:
    before, such a key created a session (201) and then got 403 on its first message."""
    from django.contrib.auth import get_user_model

    from core.api_keys import api_key_issue

    leaver = get_user_model().objects.create_user(username="leaver")
    with tenant_context(world.a.org):
        write = api_key_issue(organization=world.a.org, name="w", scopes=["write"], created_by=leaver).secret
        admin = api_key_issue(organization=world.a.org, name="a", scopes=["admin"], created_by=leaver).secret
    c = client_for(key=write)
    made = c.post(world.a.url("sessions/"), {"agent": world.a.agent.slug}, format="json")
    assert made.status_code == 201, made.content  # while its creator has an account
    leaver.delete()

    error = assert_error(
        c.post(world.a.url("sessions/"), {"agent": world.a.agent.slug}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert "creator no longer has an account" in error["message"]
    fork = c.post(world.a.url(f"sessions/{world.a.session.pk}/fork/"), {}, format="json")
    assert_error(fork, 403, "PERMISSION_DENIED")
    assert c.get(world.a.url("sessions/")).status_code == 200  # reading still works
    # An admin key may write any session, an ownerless one too: it still creates them.
    r = client_for(key=admin).post(world.a.url("sessions/"), {"agent": world.a.agent.slug}, format="json")
    assert r.status_code == 201 and r.json()["owner"] is None
    posted = client_for(key=admin).post(
        world.a.url(f"sessions/{r.json()['id']}/messages/"), {"content": "hi"}, format="json"
    )
    assert posted.status_code == 201, posted.content
