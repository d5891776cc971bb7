"""Tags over REST: system presets shown to everyone, copied on write; the organization's own tags."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Session, Tag
from sessions_app.services import lifecycle
from tests.support.assertions import assert_error


@pytest.fixture
def preset(db) -> Tag:
    return Tag.all_tenants_unsafe.create(name="urgent", color="#ff0000", is_system=True)


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [t["name"] for t in response.json()]


def test_system_presets_are_visible_in_every_organization(world, client_for, preset):
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="a-tag")
    with tenant_context(world.b.org):
        Tag.objects.create(organization=world.b.org, name="b-tag")
    assert names(client_for(world.a.viewer).get(world.a.url("tags/"))) == ["a-tag", "urgent"]
    assert names(client_for(world.b.viewer).get(world.b.url("tags/"))) == ["b-tag", "urgent"]
    system = client_for(world.a.viewer).get(world.a.url(f"tags/{preset.pk}/")).json()
    assert (system["is_system"], system["source"]) == (True, None)


def test_filter_system_tags(world, client_for, preset):
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="mine")
    c = client_for(world.a.viewer)
    assert names(c.get(world.a.url("tags/?is_system=true"))) == ["urgent"]
    assert names(c.get(world.a.url("tags/?is_system=false"))) == ["mine"]


def test_create_tag(world, client_for):
    r = client_for(world.a.member).post(
        world.a.url("tags/"),
        {"name": " billing ", "color": "#00FF00", "organization": world.b.org.pk, "is_system": True},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert (r.json()["name"], r.json()["color"], r.json()["is_system"]) == ("billing", "#00ff00", False)
    tag = Tag.all_tenants_unsafe.get(pk=r.json()["id"])
    assert tag.organization_id == world.a.org.pk
    assert names(client_for(world.b.viewer).get(world.b.url("tags/"))) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "x", "color": "red"}, "color"), ({"name": "  ", "color": "#000000"}, "name"), ({}, "name")],
)
def test_tag_validation(world, client_for, body, field):
    r = client_for(world.a.member).post(world.a.url("tags/"), body, format="json")
    assert field in assert_error(r, 400, "VALIDATION_ERROR")["details"]


def test_duplicate_tag_name_is_a_conflict(world, client_for):
    c = client_for(world.a.member)
    assert c.post(world.a.url("tags/"), {"name": "dup", "color": "#000000"}, format="json").status_code == 201
    assert_error(
        c.post(world.a.url("tags/"), {"name": "dup", "color": "#111111"}, format="json"), 409, "CONFLICT"
    )


def test_same_tag_name_in_two_organizations(world, client_for):
    body = {"name": "shared-name", "color": "#000000"}
    assert client_for(world.a.member).post(world.a.url("tags/"), body, format="json").status_code == 201
    assert client_for(world.b.member).post(world.b.url("tags/"), body, format="json").status_code == 201


def test_update_and_delete_own_tag(world, client_for):
    with tenant_context(world.a.org):
        tag = Tag.objects.create(organization=world.a.org, name="old")
    c = client_for(world.a.member)
    r = c.patch(world.a.url(f"tags/{tag.pk}/"), {"name": "new", "color": "#abcdef"}, format="json")
    assert r.status_code == 200, r.content
    assert (r.json()["id"], r.json()["name"], r.json()["color"]) == (tag.pk, "new", "#abcdef")
    assert c.delete(world.a.url(f"tags/{tag.pk}/")).status_code == 204
    assert not Tag.all_tenants_unsafe.filter(pk=tag.pk).exists()


def test_editing_a_preset_copies_it_into_the_organization(world, client_for, preset):
    with tenant_context(world.a.org):
        lifecycle.session_update(world.a.session, tags=[preset])
    with tenant_context(world.b.org):
        lifecycle.session_update(world.b.session, tags=[preset])

    r = client_for(world.a.member).patch(
        world.a.url(f"tags/{preset.pk}/"), {"color": "#0000ff"}, format="json"
    )
    assert r.status_code == 200, r.content
    copy = r.json()
    assert copy["id"] != preset.pk
    assert (copy["name"], copy["color"], copy["is_system"], copy["source"]) == (
        "urgent",
        "#0000ff",
        False,
        preset.pk,
    )
    # The preset itself is untouched and still what world.b sees.
    preset.refresh_from_db()
    assert (preset.color, preset.organization_id) == ("#ff0000", None)
    b_tags = client_for(world.b.viewer).get(world.b.url("tags/")).json()
    assert [(t["id"], t["color"]) for t in b_tags] == [(preset.pk, "#ff0000")]
    # world.a now sees its copy in place of the preset, and its sessions carry the copy.
    a_tags = client_for(world.a.viewer).get(world.a.url("tags/")).json()
    assert [(t["id"], t["color"]) for t in a_tags] == [(copy["id"], "#0000ff")]
    with tenant_context(world.a.org):
        assert [t.pk for t in Session.objects.get(pk=world.a.session.pk).tags.all()] == [copy["id"]]
    with tenant_context(world.b.org):
        assert [t.pk for t in Session.objects.get(pk=world.b.session.pk).tags.all()] == [preset.pk]


def test_editing_a_preset_twice_reuses_the_copy(world, client_for, preset):
    c = client_for(world.a.member)
    first = c.patch(world.a.url(f"tags/{preset.pk}/"), {"color": "#000001"}, format="json").json()
    second = c.patch(world.a.url(f"tags/{first['id']}/"), {"color": "#000002"}, format="json").json()
    assert second["id"] == first["id"]
    assert Tag.all_tenants_unsafe.filter(organization=world.a.org, name="urgent").count() == 1


def test_editing_a_preset_whose_name_the_organization_already_uses_is_a_conflict(world, client_for, preset):
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="urgent")
    c = client_for(world.a.member)
    assert_error(
        c.patch(world.a.url(f"tags/{preset.pk}/"), {"color": "#000000"}, format="json"), 409, "CONFLICT"
    )
    assert not Tag.all_tenants_unsafe.filter(source=preset).exists()
    # Renaming the copy on the way avoids the clash.
    r = c.patch(world.a.url(f"tags/{preset.pk}/"), {"name": "urgent-preset"}, format="json")
    assert (r.status_code, r.json()["source"]) == (200, preset.pk)


def test_renaming_a_tag_to_a_taken_name_is_a_conflict(world, client_for):
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="one")
        two = Tag.objects.create(organization=world.a.org, name="two")
    r = client_for(world.a.member).patch(world.a.url(f"tags/{two.pk}/"), {"name": "one"}, format="json")
    assert_error(r, 409, "CONFLICT")


def test_system_tags_cannot_be_deleted(world, client_for, preset):
    r = client_for(world.a.owner).delete(world.a.url(f"tags/{preset.pk}/"))
    assert_error(r, 403, "PERMISSION_DENIED")
    assert Tag.all_tenants_unsafe.filter(pk=preset.pk).exists()


def test_viewer_cannot_write_tags(world, client_for, preset):
    c = client_for(world.a.viewer)
    assert_error(
        c.post(world.a.url("tags/"), {"name": "v", "color": "#000000"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(
        c.patch(world.a.url(f"tags/{preset.pk}/"), {"color": "#000000"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )


@pytest.mark.parametrize(("method", "body"), [("get", None), ("patch", {"name": "x"}), ("delete", None)])
def test_foreign_tag_is_the_same_404_as_missing(world, client_for, method, body):
    with tenant_context(world.b.org):
        foreign_tag = Tag.objects.create(organization=world.b.org, name="b-secret")
    call = getattr(client_for(world.a.owner), method)
    foreign = call(world.a.url(f"tags/{foreign_tag.pk}/"), body, format="json")
    missing = call(world.a.url("tags/999999/"), body, format="json")
    assert_error(foreign, 404, "TAG_NOT_FOUND")
    assert foreign.json() == missing.json()
    assert Tag.all_tenants_unsafe.get(pk=foreign_tag.pk).name == "b-secret"


def test_foreign_tag_name_cannot_be_put_on_a_session(world, client_for):
    with tenant_context(world.b.org):
        Tag.objects.create(organization=world.b.org, name="b-only")
    r = client_for(world.a.member).patch(
        world.a.url(f"sessions/{world.a.session.pk}/"), {"tags": ["b-only"]}, format="json"
    )
    assert assert_error(r, 400, "VALIDATION_ERROR")["details"] == {"tags": ["Tag not found: b-only"]}
