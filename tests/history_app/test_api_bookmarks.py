"""Bookmarks over REST: private to their user, confined to their organization."""

from __future__ import annotations

import uuid

import pytest

from core.tenancy import tenant_context
from history_app.models import Bookmark
from sessions_app.services.lifecycle import session_create
from sessions_app.services.messages import message_append
from tests.support.assertions import assert_error


def bookmark_for(tenant, user, session=None, message=None, note="") -> Bookmark:
    with tenant_context(tenant.org):
        return Bookmark.objects.create(
            organization=tenant.org, user=user, session=session or tenant.session, message=message, note=note
        )


def add_message(tenant, session=None, content="hi"):
    with tenant_context(tenant.org):
        return message_append(session or tenant.session, role="user", content=content)


def test_create_a_session_bookmark(world, client_for):
    r = client_for(world.a.member).post(
        world.a.url("bookmarks/"), {"session": str(world.a.session.pk), "note": "look later"}, format="json"
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["session"], body["message"], body["note"]) == (str(world.a.session.pk), None, "look later")
    assert body["session_name"] == "acme session"
    bookmark = Bookmark.all_tenants_unsafe.get(pk=body["id"])
    assert (bookmark.organization_id, bookmark.user_id) == (world.a.org.pk, world.a.member.pk)


def test_create_a_message_bookmark(world, client_for):
    message = add_message(world.a)
    r = client_for(world.a.member).post(
        world.a.url("bookmarks/"),
        {"session": str(world.a.session.pk), "message": str(message.pk)},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert r.json()["message"] == str(message.pk)


def test_viewers_keep_bookmarks_too(world, client_for):
    r = client_for(world.a.viewer).post(
        world.a.url("bookmarks/"), {"session": str(world.a.session.pk)}, format="json"
    )
    assert r.status_code == 201, r.content


def test_bookmarking_the_same_thing_twice_updates_the_note(world, client_for):
    c = client_for(world.a.member)
    first = c.post(
        world.a.url("bookmarks/"), {"session": str(world.a.session.pk), "note": "a"}, format="json"
    )
    second = c.post(
        world.a.url("bookmarks/"), {"session": str(world.a.session.pk), "note": "b"}, format="json"
    )
    assert first.json()["id"] == second.json()["id"]
    assert Bookmark.all_tenants_unsafe.get().note == "b"


def test_tenant_and_user_fields_in_the_body_are_ignored(world, client_for):
    r = client_for(world.a.member).post(
        world.a.url("bookmarks/"),
        {"session": str(world.a.session.pk), "organization": world.b.org.pk, "user": world.a.owner.pk},
        format="json",
    )
    assert r.status_code == 201, r.content
    bookmark = Bookmark.all_tenants_unsafe.get(pk=r.json()["id"])
    assert (bookmark.organization_id, bookmark.user_id) == (world.a.org.pk, world.a.member.pk)


def test_bookmark_on_another_organizations_session_is_not_found(world, client_for):
    c = client_for(world.a.member)
    foreign = c.post(world.a.url("bookmarks/"), {"session": str(world.b.session.pk)}, format="json")
    missing = c.post(world.a.url("bookmarks/"), {"session": str(uuid.uuid4())}, format="json")
    assert assert_error(foreign, 400, "VALIDATION_ERROR")["details"] == {"session": ["Session not found."]}
    assert foreign.json() == missing.json()
    assert not Bookmark.all_tenants_unsafe.exists()


def test_bookmark_on_another_organizations_message_is_not_found(world, client_for):
    foreign_message = add_message(world.b)
    c = client_for(world.a.member)
    foreign = c.post(
        world.a.url("bookmarks/"),
        {"session": str(world.a.session.pk), "message": str(foreign_message.pk)},
        format="json",
    )
    missing = c.post(
        world.a.url("bookmarks/"),
        {"session": str(world.a.session.pk), "message": str(uuid.uuid4())},
        format="json",
    )
    assert assert_error(foreign, 400, "VALIDATION_ERROR")["details"] == {"message": ["Message not found."]}
    assert foreign.json() == missing.json()


def test_message_must_belong_to_the_bookmarked_session(world, client_for):
    with tenant_context(world.a.org):
        other = session_create(organization=world.a.org, agent=world.a.agent, owner=world.a.member)
    message = add_message(world.a, session=other)
    r = client_for(world.a.member).post(
        world.a.url("bookmarks/"),
        {"session": str(world.a.session.pk), "message": str(message.pk)},
        format="json",
    )
    assert assert_error(r, 400, "VALIDATION_ERROR")["details"] == {"message": ["Message not found."]}


@pytest.mark.parametrize("body", [{}, {"session": "not-an-id"}, {"session": True}, {"session": None}])
def test_bookmark_validation(world, client_for, body):
    r = client_for(world.a.member).post(world.a.url("bookmarks/"), body, format="json")
    assert "session" in assert_error(r, 400, "VALIDATION_ERROR")["details"]


def test_list_shows_only_my_bookmarks(world, client_for):
    mine = bookmark_for(world.a, world.a.member, note="mine")
    bookmark_for(world.a, world.a.admin, note="admin's")
    bookmark_for(world.b, world.b.member, note="foreign")
    r = client_for(world.a.member).get(world.a.url("bookmarks/"))
    assert r.status_code == 200, r.content
    assert [b["id"] for b in r.json()["results"]] == [str(mine.pk)]


def test_update_and_delete_my_bookmark(world, client_for):
    mine = bookmark_for(world.a, world.a.member, note="old")
    c = client_for(world.a.member)
    r = c.patch(world.a.url(f"bookmarks/{mine.pk}/"), {"note": "new"}, format="json")
    assert (r.status_code, r.json()["note"]) == (200, "new")
    assert c.get(world.a.url(f"bookmarks/{mine.pk}/")).json()["note"] == "new"
    assert c.delete(world.a.url(f"bookmarks/{mine.pk}/")).status_code == 204
    assert not Bookmark.all_tenants_unsafe.filter(pk=mine.pk).exists()


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
@pytest.mark.parametrize(
    ("method", "body"), [("get", None), ("patch", {"note": "mine now"}), ("delete", None)]
)
def test_another_members_bookmark_is_the_same_404_as_missing(world, client_for, role, method, body):
    theirs = bookmark_for(world.a, world.a.viewer, note="private")
    call = getattr(client_for(getattr(world.a, role)), method)
    other = call(world.a.url(f"bookmarks/{theirs.pk}/"), body, format="json")
    missing = call(world.a.url(f"bookmarks/{uuid.uuid4()}/"), body, format="json")
    assert_error(other, 404, "BOOKMARK_NOT_FOUND")
    assert other.json() == missing.json()
    assert Bookmark.all_tenants_unsafe.get(pk=theirs.pk).note == "private"


@pytest.mark.parametrize(("method", "body"), [("get", None), ("patch", {"note": "x"}), ("delete", None)])
def test_foreign_bookmark_is_the_same_404_as_missing(world, client_for, method, body):
    foreign = bookmark_for(world.b, world.b.member, note="foreign")
    call = getattr(client_for(world.a.owner), method)
    r_foreign = call(world.a.url(f"bookmarks/{foreign.pk}/"), body, format="json")
    r_missing = call(world.a.url(f"bookmarks/{uuid.uuid4()}/"), body, format="json")
    assert_error(r_foreign, 404, "BOOKMARK_NOT_FOUND")
    assert r_foreign.json() == r_missing.json()
    assert Bookmark.all_tenants_unsafe.get(pk=foreign.pk).note == "foreign"


def test_a_key_without_a_user_keeps_no_bookmarks(world, client_for):
    from core.api_keys import api_key_issue

    secret = api_key_issue(organization=world.a.org, name="robot", scopes=["read", "write"]).secret
    c = client_for(key=secret)
    assert c.get(world.a.url("bookmarks/")).json()["results"] == []
    r = c.post(world.a.url("bookmarks/"), {"session": str(world.a.session.pk)}, format="json")
    assert_error(r, 403, "PERMISSION_DENIED")
