"""``/api/v1/me/`` and ``/api/v1/orgs/<slug>/``: who the caller is, and the organization's settings."""

from __future__ import annotations

import pytest

from core.models import Organization
from tests.conftest import make_user
from tests.support.assertions import assert_error


def test_me_for_a_user(world, client_for):
    r = client_for(world.a.admin).get("/api/v1/me/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["user"]["username"] == "acme-admin"
    assert body["is_superuser"] is False
    assert body["api_key"] is None
    assert [(m["organization"]["slug"], m["role"]) for m in body["memberships"]] == [("acme", "admin")]


def test_me_for_a_user_in_two_organizations(world, client_for):
    from core.models import Membership

    Membership.all_tenants_unsafe.create(organization=world.b.org, user=world.a.member, role="viewer")
    body = client_for(world.a.member).get("/api/v1/me/").json()
    assert sorted((m["organization"]["slug"], m["role"]) for m in body["memberships"]) == [
        ("acme", "member"),
        ("globex", "viewer"),
    ]


def test_me_for_an_api_key(world, client_for, issue_key):
    body = client_for(key=issue_key(world.a, scopes=["read"])).get("/api/v1/me/").json()
    assert body["api_key"]["organization"] == "acme"
    assert body["api_key"]["scopes"] == ["read"]
    assert body["is_superuser"] is False
    # A key shows only its own organization's memberships, even if its creator has more.
    assert [m["organization"]["slug"] for m in body["memberships"]] == ["acme"]


def test_me_for_a_superuser_lists_every_organization(world, client_for):
    root = make_user("root", is_superuser=True, is_staff=True)
    body = client_for(root).get("/api/v1/me/").json()
    assert body["is_superuser"] is True
    assert sorted(body["organizations"]) == ["acme", "globex"]


def test_me_needs_authentication(world, client_for):
    assert_error(client_for().get("/api/v1/me/"), 401, "AUTHENTICATION_REQUIRED")


@pytest.mark.parametrize("role", ["viewer", "member", "admin", "owner"])
def test_every_member_reads_the_organization(world, client_for, role):
    r = client_for(getattr(world.a, role)).get(world.a.url())
    assert r.status_code == 200, r.content
    assert (r.json()["slug"], r.json()["name"]) == ("acme", "Acme")


def test_owner_changes_settings(world, client_for):
    r = client_for(world.a.owner).patch(
        world.a.url(),
        {
            "name": "Acme Corp",
            "default_model": "gpt-x",
            "idle_timeout_minutes": 15,
            "slug": "hijack",
            "id": 999,
        },
        format="json",
    )
    assert r.status_code == 200, r.content
    org = Organization.objects.get(pk=world.a.org.pk)
    assert (org.name, org.default_model, org.idle_timeout_minutes, org.slug) == (
        "Acme Corp",
        "gpt-x",
        15,
        "acme",
    )


@pytest.mark.parametrize("role", ["viewer", "member", "admin"])
def test_only_owners_change_settings(world, client_for, role):
    r = client_for(getattr(world.a, role)).patch(world.a.url(), {"name": "Mine"}, format="json")
    error = assert_error(r, 403, "PERMISSION_DENIED")
    assert error["details"]["required_role"] == "owner"
    assert Organization.objects.get(pk=world.a.org.pk).name == "Acme"


def test_settings_validation(world, client_for):
    r = client_for(world.a.owner).patch(world.a.url(), {"idle_timeout_minutes": -5}, format="json")
    assert "idle_timeout_minutes" in assert_error(r, 400, "VALIDATION_ERROR")["details"]


@pytest.mark.parametrize("method", ["put", "delete", "post"])
def test_organization_cannot_be_replaced_or_deleted(world, client_for, method):
    r = getattr(client_for(world.a.owner), method)(world.a.url(), {"name": "x"}, format="json")
    assert_error(r, 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("method", ["get", "patch"])
def test_another_organization_is_the_same_404_as_a_missing_one(world, client_for, method):
    c = client_for(world.b.owner)
    foreign = getattr(c, method)(world.a.url(), {"name": "pwned"}, format="json")
    missing = getattr(c, method)("/api/v1/orgs/no-such-org/", {"name": "pwned"}, format="json")
    assert_error(foreign, 404, "ORGANIZATION_NOT_FOUND")
    assert foreign.json() == missing.json()
    assert Organization.objects.get(pk=world.a.org.pk).name == "Acme"


def test_a_user_with_no_membership_sees_no_organization(world, client_for):
    stranger = make_user("stranger")
    assert_error(client_for(stranger).get(world.a.url()), 404, "ORGANIZATION_NOT_FOUND")
    assert_error(client_for(stranger).get(world.a.url("sessions/")), 404, "ORGANIZATION_NOT_FOUND")
