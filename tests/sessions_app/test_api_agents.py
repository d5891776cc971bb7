"""Agents over REST: admins manage them, everyone in the organization reads them."""

from __future__ import annotations

import uuid

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Agent, Session
from tests.support.assertions import assert_error

NEW_AGENT = {
    "name": "Researcher",
    "slug": "researcher",
    "system_prompt": "Cite sources.",
    "model": "gpt-test",
    "default_transport": "stateless",
    "tools": ["calculator"],
    "approval_mode": "manual",
    "max_context_messages": 20,
    "max_context_tokens": 4000,
}


def test_list_agents(world, client_for):
    r = client_for(world.a.viewer).get(world.a.url("agents/"))
    assert r.status_code == 200, r.content
    assert [a["id"] for a in r.json()["results"]] == [str(world.a.agent.pk)]


def test_retrieve_agent(world, client_for):
    r = client_for(world.a.viewer).get(world.a.url(f"agents/{world.a.agent.pk}/"))
    assert r.status_code == 200, r.content
    assert (r.json()["slug"], r.json()["system_prompt"]) == ("helper", "Be brief.")


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_admin_creates_an_agent(world, client_for, role):
    r = client_for(getattr(world.a, role)).post(
        world.a.url("agents/"), {**NEW_AGENT, "organization": world.b.org.pk}, format="json"
    )
    assert r.status_code == 201, r.content
    body = r.json()
    for field, value in NEW_AGENT.items():
        assert body[field] == value, field
    agent = Agent.all_tenants_unsafe.get(pk=body["id"])
    assert agent.organization_id == world.a.org.pk


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_member_and_viewer_cannot_manage_agents(world, client_for, role):
    c = client_for(getattr(world.a, role))
    url = world.a.url(f"agents/{world.a.agent.pk}/")
    assert_error(c.post(world.a.url("agents/"), NEW_AGENT, format="json"), 403, "PERMISSION_DENIED")
    assert_error(c.patch(url, {"name": "x"}, format="json"), 403, "PERMISSION_DENIED")
    assert_error(c.delete(url), 403, "PERMISSION_DENIED")
    assert Agent.all_tenants_unsafe.get(pk=world.a.agent.pk).name == "acme agent"


def test_duplicate_slug_is_a_conflict(world, client_for):
    r = client_for(world.a.admin).post(world.a.url("agents/"), {**NEW_AGENT, "slug": "helper"}, format="json")
    assert_error(r, 409, "CONFLICT")


def test_same_slug_in_another_organization_is_fine(world, client_for):
    with tenant_context(world.b.org):
        Agent.objects.create(organization=world.b.org, name="B researcher", slug="researcher")
    r = client_for(world.a.admin).post(world.a.url("agents/"), NEW_AGENT, format="json")
    assert r.status_code == 201, r.content


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"name": ""}, "name"),
        ({"slug": "not a slug"}, "slug"),
        ({"default_transport": "pigeon"}, "default_transport"),
        ({"approval_mode": "sometimes"}, "approval_mode"),
        ({"max_context_messages": 0}, "max_context_messages"),
        ({"max_context_tokens": 10}, "max_context_tokens"),
        ({"tools": "calculator"}, "tools"),
    ],
)
def test_agent_validation(world, client_for, patch, field):
    r = client_for(world.a.admin).post(world.a.url("agents/"), {**NEW_AGENT, **patch}, format="json")
    assert field in assert_error(r, 400, "VALIDATION_ERROR")["details"]


def test_update_agent(world, client_for):
    r = client_for(world.a.admin).patch(
        world.a.url(f"agents/{world.a.agent.pk}/"),
        {"system_prompt": "Be thorough.", "organization": world.b.org.pk},
        format="json",
    )
    assert r.status_code == 200, r.content
    agent = Agent.all_tenants_unsafe.get(pk=world.a.agent.pk)
    assert (agent.system_prompt, agent.organization_id) == ("Be thorough.", world.a.org.pk)


def test_update_to_a_taken_slug_is_a_conflict(world, client_for):
    with tenant_context(world.a.org):
        Agent.objects.create(organization=world.a.org, name="Other", slug="other")
    r = client_for(world.a.admin).patch(
        world.a.url(f"agents/{world.a.agent.pk}/"), {"slug": "other"}, format="json"
    )
    assert_error(r, 409, "CONFLICT")


def test_delete_an_unused_agent(world, client_for):
    with tenant_context(world.a.org):
        unused = Agent.objects.create(organization=world.a.org, name="Unused", slug="unused")
    r = client_for(world.a.admin).delete(world.a.url(f"agents/{unused.pk}/"))
    assert r.status_code == 204, r.content
    assert not Agent.all_tenants_unsafe.filter(pk=unused.pk).exists()


def test_delete_an_agent_in_use_deactivates_it(world, client_for):
    r = client_for(world.a.admin).delete(world.a.url(f"agents/{world.a.agent.pk}/"))
    assert r.status_code == 204, r.content
    agent = Agent.all_tenants_unsafe.get(pk=world.a.agent.pk)
    assert agent.is_active is False
    assert Session.all_tenants_unsafe.filter(agent=agent).exists()


@pytest.mark.parametrize(("method", "body"), [("get", None), ("patch", {"name": "stolen"}), ("delete", None)])
def test_foreign_agent_is_the_same_404_as_missing(world, client_for, method, body):
    c = client_for(world.a.owner)
    call = getattr(c, method)
    foreign = call(world.a.url(f"agents/{world.b.agent.pk}/"), body, format="json")
    missing = call(world.a.url(f"agents/{uuid.uuid4()}/"), body, format="json")
    assert_error(foreign, 404, "AGENT_NOT_FOUND")
    assert foreign.json() == missing.json()
    agent = Agent.all_tenants_unsafe.get(pk=world.b.agent.pk)
    assert (agent.name, agent.is_active) == ("globex agent", True)


def test_list_never_shows_another_organizations_agents(world, client_for):
    rows = client_for(world.a.owner).get(world.a.url("agents/")).json()["results"]
    assert str(world.b.agent.pk) not in {a["id"] for a in rows}


def test_filter_agents(world, client_for):
    with tenant_context(world.a.org):
        Agent.objects.create(organization=world.a.org, name="Off", slug="off", is_active=False)
    c = client_for(world.a.viewer)
    assert [a["slug"] for a in c.get(world.a.url("agents/?is_active=false")).json()["results"]] == ["off"]
    assert [a["slug"] for a in c.get(world.a.url("agents/?is_active=true")).json()["results"]] == ["helper"]
