"""Sessions over REST: create, read, update, lifecycle actions, filters, ordering and pagination."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import Membership, Role
from core.tenancy import tenant_context
from sessions_app.models import Session, SessionEvent, SessionTemplate, Tag
from sessions_app.services import lifecycle
from tests.conftest import make_user
from tests.support.assertions import assert_error


def make_session(tenant, owner=None, **kwargs) -> Session:
    with tenant_context(tenant.org):
        return lifecycle.session_create(
            organization=tenant.org, agent=kwargs.pop("agent", tenant.agent), owner=owner, **kwargs
        )


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- create ---------------------------------------------------------------------------------------------


def test_create_session(world, client_for):
    r = client_for(world.a.member).post(
        world.a.url("sessions/"),
        {"agent": str(world.a.agent.pk), "name": "Planning", "config": {"temperature": 0.2}},
        format="json",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["name"] == "Planning"
    assert body["status"] == "created"
    assert body["runtime_state"] == "idle"
    assert body["owner"] == world.a.member.username
    assert body["agent"] == str(world.a.agent.pk)
    assert body["config"] == {"temperature": 0.2}
    with tenant_context(world.a.org):
        session = Session.objects.get(pk=body["id"])
        assert session.organization_id == world.a.org.pk
        assert [e.type for e in session.events.all()] == ["session.created"]


def test_create_session_by_agent_slug_with_tags(world, client_for):
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="billing", color="#ff0000")
    r = client_for(world.a.member).post(
        world.a.url("sessions/"), {"agent": "helper", "tags": ["billing"]}, format="json"
    )
    assert r.status_code == 201, r.content
    assert r.json()["agent"] == str(world.a.agent.pk)
    assert r.json()["tags"] == [{"name": "billing", "color": "#ff0000"}]


def test_create_session_ignores_a_tenant_field_in_the_body(world, client_for):
    r = client_for(world.a.member).post(
        world.a.url("sessions/"),
        {"agent": str(world.a.agent.pk), "organization": world.b.org.pk, "name": "mine"},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert Session.all_tenants_unsafe.get(pk=r.json()["id"]).organization_id == world.a.org.pk


def test_create_session_with_another_organizations_agent_is_not_found(world, client_for):
    c = client_for(world.a.member)
    foreign = c.post(world.a.url("sessions/"), {"agent": str(world.b.agent.pk)}, format="json")
    missing = c.post(world.a.url("sessions/"), {"agent": str(uuid.uuid4())}, format="json")
    error = assert_error(foreign, 400, "VALIDATION_ERROR")
    assert error["details"] == {"agent": ["Agent not found."]}
    assert foreign.json() == missing.json()
    assert Session.all_tenants_unsafe.count() == 2


def test_create_session_with_another_organizations_template_is_not_found(world, client_for):
    with tenant_context(world.b.org):
        template = SessionTemplate.objects.create(organization=world.b.org, name="B", agent=world.b.agent)
    c = client_for(world.a.member)
    foreign = c.post(world.a.url("sessions/"), {"template": str(template.pk)}, format="json")
    missing = c.post(world.a.url("sessions/"), {"template": str(uuid.uuid4())}, format="json")
    assert assert_error(foreign, 400, "VALIDATION_ERROR")["details"] == {"template": ["Template not found."]}
    assert foreign.json() == missing.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent"),
        ({"agent": "no-such-agent"}, "agent"),
        ({"agent": "helper", "config": {"temperature": 9}}, "config"),
        ({"agent": "helper", "config": {"colour": "blue"}}, "config"),
        ({"agent": "helper", "config": "hot"}, "config"),
        ({"agent": "helper", "tags": ["nope"]}, "tags"),
        ({"agent": "helper", "expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_create_session_validation(world, client_for, body, field):
    r = client_for(world.a.member).post(world.a.url("sessions/"), body, format="json")
    error = assert_error(r, 400, "VALIDATION_ERROR")
    assert field in error["details"], error


def test_viewer_cannot_create_a_session(world, client_for):
    r = client_for(world.a.viewer).post(world.a.url("sessions/"), {"agent": "helper"}, format="json")
    error = assert_error(r, 403, "PERMISSION_DENIED")
    assert error["details"] == {"required_role": "member", "role": "viewer"}


# --- templates ------------------------------------------------------------------------------------------


def test_create_session_from_a_template_applies_config_agent_and_tags(world, client_for):
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="support")
        template = SessionTemplate.objects.create(
            organization=world.a.org,
            name="Support desk",
            agent=world.a.agent,
            config={"temperature": 0.1, "max_tokens": 500},
            tags=["support"],
        )
    r = client_for(world.a.member).post(
        world.a.url("sessions/"),
        {"template": str(template.pk), "config": {"max_tokens": 900}},
        format="json",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["agent"] == str(world.a.agent.pk)
    assert body["template"] == str(template.pk)
    assert body["name"] == "Support desk"
    assert body["config"] == {"temperature": 0.1, "max_tokens": 900}  # the request overrides the template
    assert [t["name"] for t in body["tags"]] == ["support"]


def test_create_session_from_a_system_template(world, client_for):
    Tag.all_tenants_unsafe.create(name="preset-tag", is_system=True)
    template = SessionTemplate.all_tenants_unsafe.create(
        name="Preset", is_system=True, config={"temperature": 1.5}, tags=["preset-tag"]
    )
    r = client_for(world.a.member).post(
        world.a.url("sessions/"), {"template": str(template.pk), "agent": "helper"}, format="json"
    )
    assert r.status_code == 201, r.content
    assert r.json()["config"] == {"temperature": 1.5}
    assert [t["name"] for t in r.json()["tags"]] == ["preset-tag"]


def test_template_tags_resolve_to_the_organizations_copy_of_a_preset(world, client_for):
    system = Tag.all_tenants_unsafe.create(name="urgent", is_system=True, color="#000000")
    c = client_for(world.a.admin)
    r = c.patch(world.a.url(f"tags/{system.pk}/"), {"color": "#ff0000"}, format="json")
    assert r.status_code == 200, r.content
    template = SessionTemplate.all_tenants_unsafe.create(name="Urgent", is_system=True, tags=["urgent"])
    r = c.post(world.a.url("sessions/"), {"template": str(template.pk), "agent": "helper"}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["tags"] == [{"name": "urgent", "color": "#ff0000"}]


# --- read -----------------------------------------------------------------------------------------------


def test_retrieve_session(world, client_for):
    r = client_for(world.a.viewer).get(world.a.url(f"sessions/{world.a.session.pk}/"))
    assert r.status_code == 200, r.content
    assert r.json()["id"] == str(world.a.session.pk)
    assert r.json()["owner"] == world.a.member.username
    assert r.json()["agent_name"] == world.a.agent.name


def test_foreign_session_is_the_same_404_as_a_missing_one(world, client_for):
    c = client_for(world.a.owner)
    foreign = c.get(world.a.url(f"sessions/{world.b.session.pk}/"))
    missing = c.get(world.a.url(f"sessions/{uuid.uuid4()}/"))
    malformed = c.get(world.a.url("sessions/not-a-uuid/"))
    assert_error(foreign, 404, "SESSION_NOT_FOUND")
    assert foreign.json() == missing.json() == malformed.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", ""),
        ("post", "activate/"),
        ("post", "suspend/"),
        ("post", "resume/"),
        ("post", "end/"),
    ],
)
def test_foreign_session_cannot_be_changed(world, client_for, method, path):
    c = client_for(world.a.owner)
    foreign = getattr(c, method)(
        world.a.url(f"sessions/{world.b.session.pk}/{path}"), {"name": "x"}, format="json"
    )
    missing = getattr(c, method)(world.a.url(f"sessions/{uuid.uuid4()}/{path}"), {"name": "x"}, format="json")
    assert_error(foreign, 404, "SESSION_NOT_FOUND")
    assert foreign.json() == missing.json()
    with tenant_context(world.b.org):
        stored = Session.objects.get(pk=world.b.session.pk)
        assert (stored.status, stored.name) == ("created", "globex session")


def test_sessions_cannot_be_deleted(world, client_for):
    r = client_for(world.a.owner).delete(world.a.url(f"sessions/{world.a.session.pk}/"))
    assert_error(r, 405, "METHOD_NOT_ALLOWED")


def test_list_never_shows_another_organizations_sessions(world, client_for):
    make_session(world.b, owner=world.b.member, name="b2")
    assert ids(client_for(world.a.member).get(world.a.url("sessions/"))) == [str(world.a.session.pk)]
    assert len(ids(client_for(world.b.member).get(world.b.url("sessions/")))) == 2


def test_superuser_who_is_not_a_member_reads_any_organization(world, client_for):
    root = make_user("root", is_superuser=True, is_staff=True)
    assert ids(client_for(root).get(world.b.url("sessions/"))) == [str(world.b.session.pk)]


# --- update ---------------------------------------------------------------------------------------------


def test_owner_of_a_session_updates_it(world, client_for):
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="t1")
    r = client_for(world.a.member).patch(
        world.a.url(f"sessions/{world.a.session.pk}/"),
        {"name": "New name", "config": {"temperature": 0.7}, "tags": ["t1"], "metadata": {"ticket": 7}},
        format="json",
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["name"] == "New name"
    assert body["config"]["temperature"] == 0.7
    assert body["tags"] == [{"name": "t1", "color": "#6b7280"}]
    assert body["metadata"] == {"ticket": 7}


def test_update_ignores_tenant_and_read_only_fields(world, client_for):
    r = client_for(world.a.member).patch(
        world.a.url(f"sessions/{world.a.session.pk}/"),
        {"organization": world.b.org.pk, "status": "ended", "owner": world.a.admin.pk, "name": "n"},
        format="json",
    )
    assert r.status_code == 200, r.content
    stored = Session.all_tenants_unsafe.get(pk=world.a.session.pk)
    assert (stored.organization_id, stored.status, stored.owner_id, stored.name) == (
        world.a.org.pk,
        "created",
        world.a.member.pk,
        "n",
    )


@pytest.mark.parametrize("config", [{"max_tokens": 0}, {"colour": "blue"}, "hot", [1, 2]])
def test_update_validation(world, client_for, config):
    r = client_for(world.a.member).patch(
        world.a.url(f"sessions/{world.a.session.pk}/"), {"config": config}, format="json"
    )
    assert "config" in assert_error(r, 400, "VALIDATION_ERROR")["details"]


def test_ended_session_cannot_be_updated(world, client_for):
    c = client_for(world.a.member)
    c.post(world.a.url(f"sessions/{world.a.session.pk}/end/"))
    r = c.patch(world.a.url(f"sessions/{world.a.session.pk}/"), {"name": "late"}, format="json")
    assert assert_error(r, 400, "INVALID_STATE")["details"]["status"] == "ended"


# --- lifecycle actions ----------------------------------------------------------------------------------


def test_lifecycle_actions_over_the_api(world, client_for):
    c = client_for(world.a.member)
    base = world.a.url(f"sessions/{world.a.session.pk}/")
    for action, status in [
        ("activate", "active"),
        ("suspend", "suspended"),
        ("suspend", "suspended"),
        ("resume", "active"),
        ("end", "ended"),
        ("end", "ended"),
    ]:
        r = c.post(base + f"{action}/")
        assert r.status_code == 200, (action, r.content)
        assert r.json()["status"] == status
    assert r.json()["ended_reason"] == "user"
    assert r.json()["ended_at"]
    with tenant_context(world.a.org):
        types = list(SessionEvent.objects.filter(session=world.a.session).values_list("type", flat=True))
    assert types == [
        "session.created",
        "session.activated",
        "session.suspended",
        "session.activated",
        "session.ended",
    ]


@pytest.mark.parametrize(
    ("setup", "action", "status"),
    [
        ([], "suspend", "created"),
        ([], "resume", "created"),
        (["activate", "suspend"], "activate", "suspended"),
        (["end"], "activate", "ended"),
        (["end"], "resume", "ended"),
        (["end"], "suspend", "ended"),
    ],
)
def test_illegal_action_is_invalid_state_naming_the_status(world, client_for, setup, action, status):
    c = client_for(world.a.member)
    base = world.a.url(f"sessions/{world.a.session.pk}/")
    for step in setup:
        assert c.post(base + f"{step}/").status_code == 200
    error = assert_error(c.post(base + f"{action}/"), 400, "INVALID_STATE")
    assert status in error["message"]
    assert error["details"]["status"] == status


def test_actions_do_not_accept_get(world, client_for):
    r = client_for(world.a.member).get(world.a.url(f"sessions/{world.a.session.pk}/activate/"))
    assert_error(r, 405, "METHOD_NOT_ALLOWED")


# --- who may change a session ---------------------------------------------------------------------------


@pytest.fixture
def other_member(world):
    user = make_user("acme-member-2")
    with tenant_context(world.a.org):
        Membership.objects.create(organization=world.a.org, user=user, role=Role.MEMBER)
    return user


@pytest.mark.parametrize("action", ["activate/", "end/"])
def test_member_cannot_change_another_members_session(world, client_for, other_member, action):
    c = client_for(other_member)
    r = c.post(world.a.url(f"sessions/{world.a.session.pk}/{action}"))
    assert_error(r, 403, "PERMISSION_DENIED")
    r = c.patch(world.a.url(f"sessions/{world.a.session.pk}/"), {"name": "mine now"}, format="json")
    assert_error(r, 403, "PERMISSION_DENIED")
    # ... but reads it.
    assert c.get(world.a.url(f"sessions/{world.a.session.pk}/")).status_code == 200
    assert Session.all_tenants_unsafe.get(pk=world.a.session.pk).status == "created"


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_admin_and_owner_change_any_session(world, client_for, role):
    c = client_for(getattr(world.a, role))
    r = c.post(world.a.url(f"sessions/{world.a.session.pk}/end/"))
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "ended"


@pytest.mark.parametrize("action", ["activate/", "suspend/", "resume/", "end/"])
def test_viewer_cannot_run_actions(world, client_for, action):
    r = client_for(world.a.viewer).post(world.a.url(f"sessions/{world.a.session.pk}/{action}"))
    assert_error(r, 403, "PERMISSION_DENIED")


# --- filters, ordering, pagination ----------------------------------------------------------------------


@pytest.fixture
def many(world):
    """Sessions of world.a with distinct statuses, owners, agents, tags and creation times."""
    with tenant_context(world.a.org):
        from sessions_app.models import Agent

        other_agent = Agent.objects.create(organization=world.a.org, name="Coder", slug="coder")
        red = Tag.objects.create(organization=world.a.org, name="red")
        blue = Tag.objects.create(organization=world.a.org, name="blue")
    s = {
        "base": world.a.session,  # member's, created
        "active": make_session(world.a, owner=world.a.admin, name="Alpha project"),
        "suspended": make_session(world.a, owner=world.a.member, name="Beta launch", tags=[red]),
        "ended": make_session(world.a, owner=world.a.admin, name="alpha retro", tags=[red, blue]),
        "coder": make_session(world.a, owner=world.a.member, agent=other_agent, name="Code review"),
    }
    with tenant_context(world.a.org):
        lifecycle.session_activate(s["active"])
        lifecycle.session_suspend(lifecycle.session_activate(s["suspended"]))
        lifecycle.session_end(s["ended"])
    now = timezone.now()
    for days, key in enumerate(["coder", "ended", "suspended", "active", "base"]):
        Session.all_tenants_unsafe.filter(pk=s[key].pk).update(created_at=now - timedelta(days=days * 10))
    # A foreign session that would match every filter.
    make_session(world.b, owner=world.b.member, name="Alpha")
    return {k: str(v.pk) for k, v in s.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=created", ["coder", "base"]),
        ("status=active", ["active"]),
        ("status=suspended&status=ended", ["ended", "suspended"]),
        ("agent=coder", ["coder"]),
        ("agent=helper", ["ended", "suspended", "active", "base"]),
        ("tag=red", ["ended", "suspended"]),
        ("tag=red&tag=blue", ["ended"]),
        ("tag=nope", []),
        ("owner=me", ["coder", "suspended", "base"]),
        ("q=alpha", ["ended", "active"]),
        ("q=ALPHA&status=active", ["active"]),
        ("runtime_state=idle", ["coder", "ended", "suspended", "active", "base"]),
    ],
)
def test_session_filters(world, client_for, many, query, expected):
    r = client_for(world.a.member).get(world.a.url(f"sessions/?{query}"))
    assert ids(r) == [many[k] for k in expected]


def test_filter_by_agent_id(world, client_for, many):
    with tenant_context(world.a.org):
        from sessions_app.models import Agent

        coder = Agent.objects.get(slug="coder")
    assert ids(client_for(world.a.member).get(world.a.url(f"sessions/?agent={coder.pk}"))) == [many["coder"]]
    # Another organization's agent id matches nothing here.
    assert ids(client_for(world.a.member).get(world.a.url(f"sessions/?agent={world.b.agent.pk}"))) == []


def test_filter_by_owner_id(world, client_for, many):
    r = client_for(world.a.member).get(world.a.url(f"sessions/?owner={world.a.admin.pk}"))
    assert ids(r) == [many["ended"], many["active"]]


def test_filter_by_creation_time(world, client_for, many):
    c = client_for(world.a.member)
    cutoff = (timezone.now() - timedelta(days=15)).isoformat()
    after = c.get(world.a.url("sessions/"), {"created_after": cutoff})
    before = c.get(world.a.url("sessions/"), {"created_before": cutoff})
    assert ids(after) == [many["coder"], many["ended"]]
    assert ids(before) == [many["suspended"], many["active"], many["base"]]


@pytest.mark.parametrize("query", ["status=bogus", "created_after=yesterday"])
def test_bad_filter_values_are_validation_errors(world, client_for, query):
    r = client_for(world.a.member).get(world.a.url(f"sessions/?{query}"))
    assert_error(r, 400, "VALIDATION_ERROR")


def test_ordering(world, client_for, many):
    c = client_for(world.a.member)
    newest_first = ids(c.get(world.a.url("sessions/")))
    assert newest_first == [many[k] for k in ["coder", "ended", "suspended", "active", "base"]]
    assert ids(c.get(world.a.url("sessions/?ordering=created_at"))) == newest_first[::-1]


def test_cursor_pagination_follows_next_links(world, client_for, many):
    c = client_for(world.a.member)
    seen: list[str] = []
    url = world.a.url("sessions/?page_size=2")
    pages = 0
    while url:
        r = c.get(url)
        assert r.status_code == 200, r.content
        body = r.json()
        assert len(body["results"]) <= 2
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 3
    assert seen == [many[k] for k in ["coder", "ended", "suspended", "active", "base"]]


def test_page_size_is_capped(world, client_for, many):
    r = client_for(world.a.member).get(world.a.url("sessions/?page_size=100000"))
    assert len(ids(r)) == 5
