"""Session templates over REST: system templates shown to everyone, copied on write; own templates."""

from __future__ import annotations

import uuid

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Agent, SessionTemplate
from tests.support.assertions import assert_error


@pytest.fixture
def system_template(db) -> SessionTemplate:
    return SessionTemplate.all_tenants_unsafe.create(
        name="Code review", is_system=True, config={"temperature": 0.0}, tags=["review"]
    )


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [t["name"] for t in response.json()]


def test_system_templates_are_visible_in_every_organization(world, client_for, system_template):
    with tenant_context(world.b.org):
        SessionTemplate.objects.create(organization=world.b.org, name="B only")
    assert names(client_for(world.a.viewer).get(world.a.url("templates/"))) == ["Code review"]
    assert names(client_for(world.b.viewer).get(world.b.url("templates/"))) == ["B only", "Code review"]
    r = client_for(world.a.viewer).get(world.a.url(f"templates/{system_template.pk}/"))
    assert (r.json()["is_system"], r.json()["config"]) == (True, {"temperature": 0.0})


def test_create_template(world, client_for):
    r = client_for(world.a.member).post(
        world.a.url("templates/"),
        {
            "name": "Triage",
            "agent": "helper",
            "config": {"max_tokens": 256, "on_busy": "enqueue"},
            "tags": ["triage"],
            "organization": world.b.org.pk,
            "is_system": True,
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["agent"], body["is_system"], body["tags"]) == (str(world.a.agent.pk), False, ["triage"])
    assert body["config"] == {"max_tokens": 256, "on_busy": "enqueue"}
    assert SessionTemplate.all_tenants_unsafe.get(pk=body["id"]).organization_id == world.a.org.pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "config": {"temperature": 5}}, "config"),
        ({"name": "x", "config": {"unknown": 1}}, "config"),
        ({"name": "x", "agent": "no-such-agent"}, "agent"),
        ({"config": {}}, "name"),
    ],
)
def test_template_validation(world, client_for, body, field):
    r = client_for(world.a.member).post(world.a.url("templates/"), body, format="json")
    assert field in assert_error(r, 400, "VALIDATION_ERROR")["details"]


def test_template_with_another_organizations_agent_is_not_found(world, client_for):
    c = client_for(world.a.member)
    foreign = c.post(world.a.url("templates/"), {"name": "x", "agent": str(world.b.agent.pk)}, format="json")
    missing = c.post(world.a.url("templates/"), {"name": "x", "agent": str(uuid.uuid4())}, format="json")
    assert assert_error(foreign, 400, "VALIDATION_ERROR")["details"] == {"agent": ["Agent not found."]}
    assert foreign.json() == missing.json()


def test_duplicate_template_name_is_a_conflict(world, client_for):
    c = client_for(world.a.member)
    assert c.post(world.a.url("templates/"), {"name": "Same"}, format="json").status_code == 201
    assert_error(c.post(world.a.url("templates/"), {"name": "Same"}, format="json"), 409, "CONFLICT")


def test_update_and_delete_own_template(world, client_for):
    with tenant_context(world.a.org):
        template = SessionTemplate.objects.create(organization=world.a.org, name="Mine")
    c = client_for(world.a.member)
    r = c.patch(world.a.url(f"templates/{template.pk}/"), {"description": "Better"}, format="json")
    assert (r.status_code, r.json()["id"], r.json()["description"]) == (200, str(template.pk), "Better")
    assert c.delete(world.a.url(f"templates/{template.pk}/")).status_code == 204
    assert not SessionTemplate.all_tenants_unsafe.filter(pk=template.pk).exists()


def test_editing_a_system_template_copies_it(world, client_for, system_template):
    r = client_for(world.a.member).patch(
        world.a.url(f"templates/{system_template.pk}/"),
        {"config": {"temperature": 0.3}, "agent": "helper"},
        format="json",
    )
    assert r.status_code == 200, r.content
    copy = r.json()
    assert copy["id"] != str(system_template.pk)
    assert (copy["name"], copy["source"], copy["is_system"]) == (
        "Code review",
        str(system_template.pk),
        False,
    )
    assert (copy["config"], copy["agent"], copy["tags"]) == (
        {"temperature": 0.3},
        str(world.a.agent.pk),
        ["review"],
    )
    system_template.refresh_from_db()
    assert system_template.config == {"temperature": 0.0}
    # world.a sees its copy in place of the system template; world.b still the original.
    a_rows = client_for(world.a.viewer).get(world.a.url("templates/")).json()
    assert [t["id"] for t in a_rows] == [copy["id"]]
    b_rows = client_for(world.b.viewer).get(world.b.url("templates/")).json()
    assert [t["id"] for t in b_rows] == [str(system_template.pk)]


def test_editing_a_system_template_whose_name_is_taken_is_a_conflict(world, client_for, system_template):
    with tenant_context(world.a.org):
        SessionTemplate.objects.create(organization=world.a.org, name="Code review")
    c = client_for(world.a.member)
    r = c.patch(world.a.url(f"templates/{system_template.pk}/"), {"description": "x"}, format="json")
    assert_error(r, 409, "CONFLICT")
    assert not SessionTemplate.all_tenants_unsafe.filter(source=system_template).exists()
    r = c.patch(
        world.a.url(f"templates/{system_template.pk}/"), {"name": "Code review (ours)"}, format="json"
    )
    assert (r.status_code, r.json()["source"]) == (200, str(system_template.pk))


def test_system_templates_cannot_be_deleted(world, client_for, system_template):
    assert_error(
        client_for(world.a.owner).delete(world.a.url(f"templates/{system_template.pk}/")),
        403,
        "PERMISSION_DENIED",
    )
    assert SessionTemplate.all_tenants_unsafe.filter(pk=system_template.pk).exists()


def test_viewer_cannot_write_templates(world, client_for):
    assert_error(
        client_for(world.a.viewer).post(world.a.url("templates/"), {"name": "v"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )


@pytest.mark.parametrize(("method", "body"), [("get", None), ("patch", {"name": "x"}), ("delete", None)])
def test_foreign_template_is_the_same_404_as_missing(world, client_for, method, body):
    with tenant_context(world.b.org):
        foreign_template = SessionTemplate.objects.create(organization=world.b.org, name="B secret")
    call = getattr(client_for(world.a.owner), method)
    foreign = call(world.a.url(f"templates/{foreign_template.pk}/"), body, format="json")
    missing = call(world.a.url(f"templates/{uuid.uuid4()}/"), body, format="json")
    assert_error(foreign, 404, "TEMPLATE_NOT_FOUND")
    assert foreign.json() == missing.json()
    assert SessionTemplate.all_tenants_unsafe.get(pk=foreign_template.pk).name == "B secret"


def test_template_keeps_working_when_its_agent_is_from_this_org_only(world, client_for):
    with tenant_context(world.a.org):
        other = Agent.objects.create(organization=world.a.org, name="Other", slug="other")
        template = SessionTemplate.objects.create(organization=world.a.org, name="T", agent=other)
    r = client_for(world.a.member).post(
        world.a.url("sessions/"), {"template": str(template.pk)}, format="json"
    )
    assert r.status_code == 201, r.content
    assert r.json()["agent"] == str(other.pk)
