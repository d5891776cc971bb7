"""Messages of a session over REST: listing, reading, posting, and the errors of the catalogue."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import Membership, Role
from core.tenancy import tenant_context
from sessions_app.models import EndedReason, Message, Session
from sessions_app.services.lifecycle import session_end
from sessions_app.services.messages import message_append
from tests.conftest import make_user
from tests.support.assertions import assert_error


def add_messages(tenant, count: int, session=None) -> list[Message]:
    session = session or tenant.session
    with tenant_context(tenant.org):
        return [
            message_append(session, role="user" if i % 2 == 0 else "assistant", content=f"m{i}")
            for i in range(count)
        ]


def messages_url(tenant, session=None, suffix: str = "") -> str:
    return tenant.url(f"sessions/{(session or tenant.session).pk}/messages/{suffix}")


def test_list_messages_in_seq_order(world, client_for):
    added = add_messages(world.a, 3)
    r = client_for(world.a.viewer).get(messages_url(world.a))
    assert r.status_code == 200, r.content
    rows = r.json()["results"]
    assert [m["id"] for m in rows] == [str(m.pk) for m in added]
    assert [m["seq"] for m in rows] == [1, 2, 3]
    assert [m["content"] for m in rows] == ["m0", "m1", "m2"]


def test_filter_messages_by_role(world, client_for):
    add_messages(world.a, 4)
    r = client_for(world.a.viewer).get(messages_url(world.a) + "?role=assistant")
    assert [m["content"] for m in r.json()["results"]] == ["m1", "m3"]


def test_message_pages_follow_next_links(world, client_for):
    add_messages(world.a, 5)
    c = client_for(world.a.viewer)
    url, seen = messages_url(world.a) + "?page_size=2", []
    while url:
        body = c.get(url).json()
        seen += [m["seq"] for m in body["results"]]
        url = body["next"]
    assert seen == [1, 2, 3, 4, 5]


def test_retrieve_message(world, client_for):
    [message] = add_messages(world.a, 1)
    r = client_for(world.a.viewer).get(messages_url(world.a, suffix=f"{message.pk}/"))
    assert r.status_code == 200, r.content
    assert r.json()["content"] == "m0"
    assert r.json()["session"] == str(world.a.session.pk)


def test_messages_of_another_session_in_the_same_org_are_not_found_under_this_one(world, client_for):
    with tenant_context(world.a.org):
        from sessions_app.services.lifecycle import session_create

        other = session_create(organization=world.a.org, agent=world.a.agent, owner=world.a.member)
    [message] = add_messages(world.a, 1, session=other)
    r = client_for(world.a.viewer).get(messages_url(world.a, suffix=f"{message.pk}/"))
    assert_error(r, 404, "MESSAGE_NOT_FOUND")
    assert client_for(world.a.viewer).get(messages_url(world.a)).json()["results"] == []


def test_foreign_session_messages_are_the_same_404_as_missing(world, client_for):
    add_messages(world.b, 1)
    c = client_for(world.a.owner)
    foreign = c.get(messages_url(world.a, session=world.b.session))
    missing = c.get(world.a.url(f"sessions/{uuid.uuid4()}/messages/"))
    malformed = c.get(world.a.url("sessions/nope/messages/"))
    assert_error(foreign, 404, "SESSION_NOT_FOUND")
    assert foreign.json() == missing.json() == malformed.json()


def test_foreign_message_id_is_the_same_404_as_missing(world, client_for):
    [foreign_message] = add_messages(world.b, 1)
    c = client_for(world.a.owner)
    foreign = c.get(messages_url(world.a, suffix=f"{foreign_message.pk}/"))
    missing = c.get(messages_url(world.a, suffix=f"{uuid.uuid4()}/"))
    assert_error(foreign, 404, "MESSAGE_NOT_FOUND")
    assert foreign.json() == missing.json()


def test_post_a_message(world, client_for):
    r = client_for(world.a.member).post(messages_url(world.a), {"content": "hello"}, format="json")
    assert r.status_code == 201, r.content
    with tenant_context(world.a.org):
        message = Message.objects.get(session=world.a.session)
        assert (message.seq, message.role, message.content) == (1, "user", "hello")
        assert message.author == world.a.member
        assert Session.objects.get(pk=world.a.session.pk).status == "active"
    listed = client_for(world.a.viewer).get(messages_url(world.a)).json()["results"]
    assert [(m["content"], m["author"]) for m in listed] == [("hello", world.a.member.username)]


def test_posting_without_files_does_not_look_up_attachments(world, client_for):
    """The new message can have none: its response says so without a query."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        r = client_for(world.a.member).post(messages_url(world.a), {"content": "hello"}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["message"]["attachments"] == []
    assert not [q["sql"] for q in queries if "sessions_app_attachment" in q["sql"]]


def test_post_ignores_a_tenant_field_and_a_foreign_session_in_the_body(world, client_for):
    r = client_for(world.a.member).post(
        messages_url(world.a),
        {"content": "hi", "organization": world.b.org.pk, "session": str(world.b.session.pk)},
        format="json",
    )
    assert r.status_code == 201, r.content
    message = Message.all_tenants_unsafe.get()
    assert (message.organization_id, message.session_id) == (world.a.org.pk, world.a.session.pk)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"content": ""}, 400, "INVALID_MESSAGE"),
        ({"content": "   \n"}, 400, "INVALID_MESSAGE"),
        ({}, 400, None),
        ({"content": None}, 400, None),
        ({"content": ["a"]}, 400, None),
    ],
)
def test_post_invalid_content(world, client_for, body, status, code):
    r = client_for(world.a.member).post(messages_url(world.a), body, format="json")
    assert r.status_code == status, r.content
    assert r.json()["error"]["code"] in ({code} if code else {"INVALID_MESSAGE", "VALIDATION_ERROR"})
    assert not Message.all_tenants_unsafe.exists()


def test_post_too_long(world, client_for, settings):
    settings.MESSAGE_MAX_CHARS = 10
    r = client_for(world.a.member).post(messages_url(world.a), {"content": "x" * 11}, format="json")
    error = assert_error(r, 413, "MESSAGE_TOO_LONG")
    assert error["details"] == {"length": 11, "limit": 10}


def test_post_to_an_expired_session_is_410_and_ends_it(world, client_for):
    Session.all_tenants_unsafe.filter(pk=world.a.session.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    c = client_for(world.a.member)
    assert_error(c.post(messages_url(world.a), {"content": "hi"}, format="json"), 410, "SESSION_EXPIRED")
    body = c.get(world.a.url(f"sessions/{world.a.session.pk}/")).json()
    assert (body["status"], body["ended_reason"]) == ("ended", EndedReason.EXPIRED)
    assert not Message.all_tenants_unsafe.exists()


def test_post_to_an_ended_session_is_invalid_state(world, client_for):
    with tenant_context(world.a.org):
        session_end(world.a.session)
    r = client_for(world.a.member).post(messages_url(world.a), {"content": "hi"}, format="json")
    assert assert_error(r, 400, "INVALID_STATE")["details"]["status"] == "ended"


def test_viewer_cannot_post(world, client_for):
    r = client_for(world.a.viewer).post(messages_url(world.a), {"content": "hi"}, format="json")
    assert_error(r, 403, "PERMISSION_DENIED")


def test_member_cannot_post_to_another_members_session_but_admin_can(world, client_for):
    other = make_user("acme-member-2")
    with tenant_context(world.a.org):
        Membership.objects.create(organization=world.a.org, user=other, role=Role.MEMBER)
    r = client_for(other).post(messages_url(world.a), {"content": "hi"}, format="json")
    assert_error(r, 403, "PERMISSION_DENIED")
    r = client_for(world.a.admin).post(messages_url(world.a), {"content": "hi"}, format="json")
    assert r.status_code == 201, r.content


def test_post_to_a_foreign_session_is_not_found_and_stores_nothing(world, client_for):
    r = client_for(world.a.owner).post(
        messages_url(world.a, session=world.b.session), {"content": "hi"}, format="json"
    )
    assert_error(r, 404, "SESSION_NOT_FOUND")
    assert not Message.all_tenants_unsafe.exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_messages_are_immutable_over_the_api(world, client_for, method):
    [message] = add_messages(world.a, 1)
    r = getattr(client_for(world.a.owner), method)(
        messages_url(world.a, suffix=f"{message.pk}/"), {"content": "edited"}, format="json"
    )
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
