"""The history list: the organization's sessions with every filter, cursor pages, the caller's bookmarks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.tenancy import tenant_context
from history_app.models import Bookmark
from sessions_app.models import Agent, RuntimeState, Session
from sessions_app.services.lifecycle import session_activate, session_end, session_suspend
from tests.history_app.builders import add_message, new_session
from tests.support.assertions import assert_error


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [s["name"] for s in response.json()["results"]]


@pytest.fixture
def sessions(world):
    """Four more sessions in world.a with distinct status, agent, tags, owner, times and runtime state."""
    a = world.a
    with tenant_context(a.org):
        writer = Agent.objects.create(organization=a.org, name="Writer", slug="writer")
    made = {
        "alpha": new_session(a, "Alpha planning", tags=["finance", "urgent"]),
        "beta": new_session(a, "Beta review", owner=a.admin, agent=writer, tags=["finance"]),
        "gamma": new_session(a, "Gamma notes", owner=a.admin),
        "delta": new_session(a, "Delta chat", agent=writer),
    }
    with tenant_context(a.org):
        add_message(a, "hi", session=made["alpha"])
        session_suspend(session_activate(made["alpha"]))
        session_end(made["gamma"])
        Session.objects.filter(pk=made["delta"].pk).update(runtime_state=RuntimeState.STREAMING)
        old = timezone.now() - timedelta(days=10)
        Session.objects.filter(pk=made["gamma"].pk).update(created_at=old, last_activity_at=old)
        Session.objects.filter(pk=made["beta"].pk).update(last_activity_at=timezone.now() - timedelta(days=3))
    return made


def get(client, tenant, **params):
    return client.get(tenant.url("history/"), params)


def test_lists_the_organizations_sessions_newest_first(world, client_for, sessions):
    listed = names(get(client_for(world.a.viewer), world.a))
    assert sorted(listed) == sorted(
        ["Alpha planning", "Beta review", "Gamma notes", "Delta chat", "acme session"]
    )
    assert listed[-1] == "Gamma notes"  # created ten days ago
    assert "globex session" not in listed


def test_filter_by_status(world, client_for, sessions):
    c = client_for(world.a.member)
    assert names(get(c, world.a, status="suspended")) == ["Alpha planning"]
    assert names(get(c, world.a, status="ended")) == ["Gamma notes"]
    assert sorted(names(c.get(world.a.url("history/") + "?status=ended&status=suspended"))) == [
        "Alpha planning",
        "Gamma notes",
    ]


def test_filter_by_agent_slug_or_id(world, client_for, sessions):
    c = client_for(world.a.member)
    assert sorted(names(get(c, world.a, agent="writer"))) == ["Beta review", "Delta chat"]
    assert sorted(names(get(c, world.a, agent=str(sessions["beta"].agent_id)))) == [
        "Beta review",
        "Delta chat",
    ]
    assert names(get(c, world.a, agent=str(world.b.agent.pk))) == []


def test_filter_by_tag(world, client_for, sessions):
    c = client_for(world.a.member)
    assert sorted(names(get(c, world.a, tag="finance"))) == ["Alpha planning", "Beta review"]
    assert names(c.get(world.a.url("history/") + "?tag=finance&tag=urgent")) == ["Alpha planning"]
    assert names(get(c, world.a, tag="nonexistent")) == []


def test_filter_by_owner(world, client_for, sessions):
    c = client_for(world.a.member)
    assert sorted(names(get(c, world.a, owner="me"))) == ["Alpha planning", "Delta chat", "acme session"]
    assert sorted(names(get(c, world.a, owner=str(world.a.admin.pk)))) == ["Beta review", "Gamma notes"]
    assert names(get(c, world.a, owner="nobody")) == []


def test_filter_by_created_range(world, client_for, sessions):
    c = client_for(world.a.member)
    cutoff = (timezone.now() - timedelta(days=5)).isoformat()
    assert names(get(c, world.a, created_before=cutoff)) == ["Gamma notes"]
    assert "Gamma notes" not in names(get(c, world.a, created_after=cutoff))
    assert len(names(get(c, world.a, created_after=cutoff))) == 4


def test_filter_by_last_activity_range(world, client_for, sessions):
    c = client_for(world.a.member)
    now = timezone.now()
    window = {
        "active_after": (now - timedelta(days=5)).isoformat(),
        "active_before": (now - timedelta(days=1)).isoformat(),
    }
    assert names(get(c, world.a, **window)) == ["Beta review"]
    assert names(get(c, world.a, active_before=(now - timedelta(days=7)).isoformat())) == ["Gamma notes"]


def test_filter_by_runtime_state(world, client_for, sessions):
    c = client_for(world.a.member)
    assert names(get(c, world.a, runtime_state="streaming")) == ["Delta chat"]
    assert "Delta chat" not in names(get(c, world.a, runtime_state="idle"))


def test_filter_by_text_in_the_name(world, client_for, sessions):
    c = client_for(world.a.member)
    assert names(get(c, world.a, q="REVIEW")) == ["Beta review"]
    assert names(get(c, world.a, name="notes")) == ["Gamma notes"]


def test_has_bookmarks_counts_only_the_callers_bookmarks(world, client_for, sessions):
    with tenant_context(world.a.org):
        Bookmark.objects.create(organization=world.a.org, user=world.a.member, session=sessions["beta"])
        Bookmark.objects.create(organization=world.a.org, user=world.a.admin, session=sessions["gamma"])
    member, admin = client_for(world.a.member), client_for(world.a.admin)
    assert names(get(member, world.a, has_bookmarks="true")) == ["Beta review"]
    assert names(get(admin, world.a, has_bookmarks="true")) == ["Gamma notes"]
    assert "Beta review" not in names(get(member, world.a, has_bookmarks="false"))
    assert "Gamma notes" in names(get(member, world.a, has_bookmarks="false"))
    flags = {s["name"]: s["bookmarked"] for s in get(member, world.a).json()["results"]}
    assert flags["Beta review"] is True and flags["Gamma notes"] is False


def test_filters_combine(world, client_for, sessions):
    c = client_for(world.a.member)
    assert names(get(c, world.a, agent="writer", tag="finance", owner=str(world.a.admin.pk))) == [
        "Beta review"
    ]


def test_invalid_filters_are_validation_errors(world, client_for):
    c = client_for(world.a.member)
    assert_error(get(c, world.a, status="bogus"), 400, "VALIDATION_ERROR")
    assert_error(get(c, world.a, created_after="yesterday"), 400, "VALIDATION_ERROR")
    assert_error(get(c, world.a, has_bookmarks="perhaps"), 400, "VALIDATION_ERROR")


def test_cursor_pages_cover_everything_once(world, client_for, sessions):
    c = client_for(world.a.member)
    seen, url = [], world.a.url("history/") + "?page_size=2"
    while url:
        response = c.get(url)
        page = names(response)
        assert len(page) <= 2
        seen += page
        url = response.json()["next"]
        assert url is None or "cursor=" in url
    assert sorted(seen) == sorted(
        ["Alpha planning", "Beta review", "Gamma notes", "Delta chat", "acme session"]
    )


def test_ordering_by_last_activity(world, client_for, sessions):
    listed = names(get(client_for(world.a.member), world.a, ordering="-last_activity_at"))
    assert listed[-2:] == ["Beta review", "Gamma notes"]


def test_rows_carry_the_session_and_message_count(world, client_for, sessions):
    (row,) = get(client_for(world.a.member), world.a, q="alpha").json()["results"]
    assert row["id"] == str(sessions["alpha"].pk)
    assert row["message_count"] == 1 and row["status"] == "suspended"
    assert sorted(t["name"] for t in row["tags"]) == ["finance", "urgent"]


def test_other_organizations_cannot_list_it(world, client_for):
    assert_error(client_for(world.b.member).get(world.a.url("history/")), 404, "ORGANIZATION_NOT_FOUND")
    assert names(get(client_for(world.b.member), world.b)) == ["globex session"]
