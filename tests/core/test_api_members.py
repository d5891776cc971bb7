"""Members over REST: admins add, change and remove members; owner rules keep an owner in charge."""

from __future__ import annotations

import pytest

from core.models import Membership
from tests.conftest import make_user
from tests.support.assertions import assert_error


def membership(tenant, user) -> Membership:
    return Membership.all_tenants_unsafe.get(organization=tenant.org, user=user)


def member_url(tenant, user) -> str:
    return tenant.url(f"members/{membership(tenant, user).pk}/")


def role_of(tenant, user) -> str | None:
    found = Membership.all_tenants_unsafe.filter(organization=tenant.org, user=user).first()
    return found.role if found else None


def test_list_members(world, client_for):
    r = client_for(world.a.viewer).get(world.a.url("members/"))
    assert r.status_code == 200, r.content
    rows = r.json()["results"]
    assert sorted((m["user"]["username"], m["role"]) for m in rows) == [
        ("acme-admin", "admin"),
        ("acme-member", "member"),
        ("acme-owner", "owner"),
        ("acme-viewer", "viewer"),
    ]


def test_filter_members_by_role(world, client_for):
    rows = client_for(world.a.viewer).get(world.a.url("members/?role=owner")).json()["results"]
    assert [m["user"]["username"] for m in rows] == ["acme-owner"]


def test_admin_adds_a_member_by_username(world, client_for):
    newcomer = make_user("newcomer")
    r = client_for(world.a.admin).post(
        world.a.url("members/"),
        {"username": "newcomer", "role": "member", "organization": world.b.org.pk},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert (r.json()["user"]["username"], r.json()["role"]) == ("newcomer", "member")
    assert role_of(world.a, newcomer) == "member"
    assert role_of(world.b, newcomer) is None


def test_add_by_email_with_default_role(world, client_for):
    newcomer = make_user("mailer")
    r = client_for(world.a.admin).post(
        world.a.url("members/"), {"email": "MAILER@example.com"}, format="json"
    )
    assert r.status_code == 201, r.content
    assert role_of(world.a, newcomer) == "member"


def test_a_member_of_another_organization_can_be_added(world, client_for):
    r = client_for(world.a.admin).post(
        world.a.url("members/"), {"username": world.b.member.username, "role": "viewer"}, format="json"
    )
    assert r.status_code == 201, r.content
    assert (role_of(world.a, world.b.member), role_of(world.b, world.b.member)) == ("viewer", "member")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"username": "acme-member"}, 409, "CONFLICT"),
        ({"username": "nobody-at-all"}, 400, "VALIDATION_ERROR"),
        ({}, 400, "VALIDATION_ERROR"),
        ({"username": "newcomer", "role": "emperor"}, 400, "VALIDATION_ERROR"),
        ({"email": "not-an-email"}, 400, "VALIDATION_ERROR"),
    ],
)
def test_add_member_errors(world, client_for, body, status, code):
    make_user("newcomer")
    r = client_for(world.a.admin).post(world.a.url("members/"), body, format="json")
    assert_error(r, status, code)
    assert Membership.all_tenants_unsafe.filter(organization=world.a.org).count() == 4


def test_admin_changes_a_role(world, client_for):
    r = client_for(world.a.admin).patch(
        member_url(world.a, world.a.viewer), {"role": "member"}, format="json"
    )
    assert (r.status_code, r.json()["role"]) == (200, "member")
    assert role_of(world.a, world.a.viewer) == "member"


def test_admin_removes_a_member(world, client_for):
    r = client_for(world.a.admin).delete(member_url(world.a, world.a.viewer))
    assert r.status_code == 204, r.content
    assert role_of(world.a, world.a.viewer) is None
    # The removed user no longer sees the organization at all.
    assert_error(client_for(world.a.viewer).get(world.a.url("sessions/")), 404, "ORGANIZATION_NOT_FOUND")


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_members(world, client_for, role):
    make_user("newcomer")
    c = client_for(getattr(world.a, role))
    target = member_url(world.a, world.a.viewer)
    for r in [
        c.post(world.a.url("members/"), {"username": "newcomer"}, format="json"),
        c.patch(target, {"role": "admin"}, format="json"),
        c.delete(target),
    ]:
        assert_error(r, 403, "PERMISSION_DENIED")
    assert role_of(world.a, world.a.viewer) == "viewer"


# --- owner rules ----------------------------------------------------------------------------------------


def test_only_owners_grant_owner(world, client_for):
    make_user("newcomer")
    admin = client_for(world.a.admin)
    assert_error(
        admin.post(world.a.url("members/"), {"username": "newcomer", "role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(
        admin.patch(member_url(world.a, world.a.member), {"role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(
        admin.patch(member_url(world.a, world.a.admin), {"role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert role_of(world.a, world.a.admin) == "admin"
    owner = client_for(world.a.owner)
    r = owner.patch(member_url(world.a, world.a.admin), {"role": "owner"}, format="json")
    assert (r.status_code, r.json()["role"]) == (200, "owner")
    r = owner.post(world.a.url("members/"), {"username": "newcomer", "role": "owner"}, format="json")
    assert r.status_code == 201, r.content


def test_admins_cannot_demote_or_remove_an_owner(world, client_for):
    admin = client_for(world.a.admin)
    target = member_url(world.a, world.a.owner)
    assert_error(admin.patch(target, {"role": "viewer"}, format="json"), 403, "PERMISSION_DENIED")
    assert_error(admin.delete(target), 403, "PERMISSION_DENIED")
    assert role_of(world.a, world.a.owner) == "owner"


def test_the_last_owner_cannot_be_demoted_or_removed(world, client_for):
    owner = client_for(world.a.owner)
    target = member_url(world.a, world.a.owner)
    error = assert_error(owner.patch(target, {"role": "admin"}, format="json"), 400, "INVALID_STATE")
    assert error["details"] == {"owners": 1}
    assert_error(owner.delete(target), 400, "INVALID_STATE")
    assert role_of(world.a, world.a.owner) == "owner"


def test_with_two_owners_one_may_step_down(world, client_for):
    owner = client_for(world.a.owner)
    assert (
        owner.patch(member_url(world.a, world.a.admin), {"role": "owner"}, format="json").status_code == 200
    )
    r = owner.patch(member_url(world.a, world.a.owner), {"role": "admin"}, format="json")
    assert (r.status_code, r.json()["role"]) == (200, "admin")
    # Now acme-admin is the last owner.
    last = client_for(world.a.admin)
    assert_error(last.delete(member_url(world.a, world.a.admin)), 400, "INVALID_STATE")


def test_owner_count_is_per_organization(world, client_for):
    # world.b's owner does not count towards world.a's last owner.
    r = client_for(world.a.owner).delete(member_url(world.a, world.a.owner))
    assert_error(r, 400, "INVALID_STATE")


def test_an_owner_removes_another_owner(world, client_for):
    owner = client_for(world.a.owner)
    owner.patch(member_url(world.a, world.a.admin), {"role": "owner"}, format="json")
    assert owner.delete(member_url(world.a, world.a.admin)).status_code == 204
    assert role_of(world.a, world.a.admin) is None


# --- cross-tenant ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "body"), [("get", None), ("patch", {"role": "viewer"}), ("delete", None)])
def test_foreign_membership_is_the_same_404_as_missing(world, client_for, method, body):
    call = getattr(client_for(world.a.owner), method)
    foreign = call(world.a.url(f"members/{membership(world.b, world.b.admin).pk}/"), body, format="json")
    missing = call(world.a.url("members/999999/"), body, format="json")
    assert_error(foreign, 404, "MEMBER_NOT_FOUND")
    assert foreign.json() == missing.json()
    assert role_of(world.b, world.b.admin) == "admin"


def test_list_never_shows_another_organizations_members(world, client_for):
    rows = client_for(world.a.owner).get(world.a.url("members/")).json()["results"]
    assert all(m["user"]["username"].startswith("acme-") for m in rows)
