"""The system presets made by the data migration: six tags and five templates, in every organization."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from core.tenancy import tenant_context, unscoped_tenant_access
from sessions_app.models import Session, SessionTemplate, Tag
from sessions_app.services import lifecycle
from tests.support.assertions import assert_error

presets_migration = importlib.import_module("sessions_app.migrations.0006_system_presets")

TAG_NAMES = sorted(spec["name"] for spec in presets_migration.SYSTEM_TAGS)
TEMPLATE_NAMES = sorted(spec["name"] for spec in presets_migration.SYSTEM_TEMPLATES)


def listed(response) -> list[tuple[str, bool]]:
    assert response.status_code == 200, response.content
    return [(row["name"], row["is_system"]) for row in response.json()]


def test_the_migrations_make_six_system_tags_and_five_system_templates(system_presets):
    tags, templates = system_presets["tags"], system_presets["templates"]
    assert (len(tags), len(templates)) == (6, 5)
    assert [t.name for t in tags] == TAG_NAMES
    assert [t.name for t in templates] == TEMPLATE_NAMES
    assert all(row.is_system and row.organization_id is None for row in [*tags, *templates])
    assert all(t.agent_id is None for t in templates)
    # A template's tags name system tags, so a session made from it is tagged.
    assert {name for t in templates for name in t.tags} <= set(TAG_NAMES)


def test_every_organization_lists_the_presets(world, system_presets, client_for):
    for tenant in (world.a, world.b):
        c = client_for(tenant.viewer)
        assert listed(c.get(tenant.url("tags/"))) == [(name, True) for name in TAG_NAMES]
        assert listed(c.get(tenant.url("templates/"))) == [(name, True) for name in TEMPLATE_NAMES]


def test_a_session_from_a_system_template_takes_its_config_and_tags(world, system_presets, client_for):
    template = next(t for t in system_presets["templates"] if t.name == "Code review")
    r = client_for(world.a.member).post(
        world.a.url("sessions/"), {"agent": "helper", "template": str(template.pk)}, format="json"
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["name"], body["template"]) == ("Code review", str(template.pk))
    assert body["config"]["temperature"] == template.config["temperature"]
    assert [t["name"] for t in body["tags"]] == template.tags == ["code"]


def test_an_org_admin_cannot_change_or_delete_a_preset(world, system_presets, client_for):
    tag = system_presets["tags"][0]
    template = system_presets["templates"][0]
    c = client_for(world.a.admin)
    assert_error(c.delete(world.a.url(f"tags/{tag.pk}/")), 403, "PERMISSION_DENIED")
    assert_error(c.delete(world.a.url(f"templates/{template.pk}/")), 403, "PERMISSION_DENIED")
    # Editing makes the organization's own copy; the preset itself stays as it was, for everyone else.
    r = c.patch(world.a.url(f"tags/{tag.pk}/"), {"color": "#000000"}, format="json")
    assert r.status_code == 200, r.content
    assert (r.json()["is_system"], r.json()["source"]) == (False, tag.pk)
    r = c.patch(world.a.url(f"templates/{template.pk}/"), {"description": "ours"}, format="json")
    assert r.status_code == 200, r.content
    assert (r.json()["is_system"], r.json()["source"]) == (False, str(template.pk))
    with unscoped_tenant_access():
        assert Tag.objects.get(pk=tag.pk).color == tag.color
        assert SessionTemplate.objects.get(pk=template.pk).description == template.description
    b = client_for(world.b.viewer)
    assert (tag.pk, tag.color) in [(t["id"], t["color"]) for t in b.get(world.b.url("tags/")).json()]
    b_templates = b.get(world.b.url("templates/")).json()
    assert (str(template.pk), template.description) in [(t["id"], t["description"]) for t in b_templates]


def test_the_migration_is_idempotent_and_its_reverse_keeps_changed_or_used_presets(world, system_presets):
    with unscoped_tenant_access():
        presets_migration.create_presets(apps, None)  # a second run adds nothing
        assert Tag.objects.filter(organization=None).count() == 6
        assert SessionTemplate.objects.filter(organization=None).count() == 5
        changed = Tag.objects.get(organization=None, name="important")
        changed.color = "#123456"
        changed.save()
        used = Tag.objects.get(organization=None, name="code")
        edited = SessionTemplate.objects.get(organization=None, name="Writing")
        edited.config = {**edited.config, "temperature": 1.0}
        edited.save()
    with tenant_context(world.a.org):
        lifecycle.session_create(organization=world.a.org, agent=world.a.agent, tags=[used])
    with unscoped_tenant_access():
        presets_migration.delete_untouched_presets(apps, None)
        assert sorted(Tag.objects.filter(organization=None).values_list("name", flat=True)) == [
            "code",
            "important",
        ]
        assert list(SessionTemplate.objects.filter(organization=None).values_list("name", flat=True)) == [
            "Writing"
        ]
        presets_migration.create_presets(apps, None)  # applied again: the missing ones come back
        assert sorted(Tag.objects.filter(organization=None).values_list("name", flat=True)) == TAG_NAMES
        assert Tag.objects.get(organization=None, name="important").color == "#123456"
        assert SessionTemplate.objects.filter(organization=None).count() == 5
        assert Session.objects.filter(tags=used).count() == 1


@pytest.mark.parametrize("spec", presets_migration.SYSTEM_TEMPLATES, ids=lambda spec: spec["name"])
def test_the_template_presets_are_valid_session_configs(spec):
    from sessions_app.config import validate_session_config

    assert validate_session_config(spec["config"]) == spec["config"]
