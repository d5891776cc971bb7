"""Who may write what: one table of operations against the four organization roles."""

from __future__ import annotations

import pytest

from core.models import Membership, Role
from core.tenancy import tenant_context
from tests.conftest import make_user
from tests.support.assertions import assert_error

ROLES = ["viewer", "member", "admin", "owner"]

# operation -> (method, path (formatted with the tenant), body, the weakest role allowed)
OPERATIONS = {
    "create session": ("post", "sessions/", {"agent": "helper"}, "member"),
    "post message": ("post", "sessions/{session}/messages/", {"content": "hi"}, "member"),
    "end session": ("post", "sessions/{session}/end/", None, "member"),
    "rename session": ("patch", "sessions/{session}/", {"name": "x"}, "member"),
    "create tag": ("post", "tags/", {"name": "t", "color": "#000000"}, "member"),
    "create template": ("post", "templates/", {"name": "t"}, "member"),
    "create agent": ("post", "agents/", {"name": "A", "slug": "a"}, "admin"),
    "change agent": ("patch", "agents/{agent}/", {"name": "A2"}, "admin"),
    "list api keys": ("get", "api-keys/", None, "admin"),
    "create api key": ("post", "api-keys/", {"name": "k"}, "admin"),
    "add member": ("post", "members/", {"username": "newcomer"}, "admin"),
    "change org settings": ("patch", "", {"name": "Renamed"}, "owner"),
    "bookmark": ("post", "bookmarks/", {"session": "{session}"}, "viewer"),
    "read sessions": ("get", "sessions/", None, "viewer"),
    "read members": ("get", "members/", None, "viewer"),
}


def fill(value, tenant):
    ids = {"session": tenant.session.pk, "agent": tenant.agent.pk}
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, tenant) for k, v in value.items()}
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_role_table(world, client_for, operation, role):
    make_user("newcomer")
    method, path, body, weakest = OPERATIONS[operation]
    # The session belongs to world.a.member, so members act on their own session here.
    r = getattr(client_for(getattr(world.a, role)), method)(
        world.a.url(fill(path, world.a)), fill(body, world.a), format="json"
    )
    if ROLES.index(role) >= ROLES.index(weakest):
        assert r.status_code < 400, (operation, role, r.status_code, r.content)
    else:
        error = assert_error(r, 403, "PERMISSION_DENIED")
        assert error["details"]["role"] == role


def test_the_table_has_a_case_for_every_role_boundary():
    assert {weakest for *_, weakest in OPERATIONS.values()} == set(ROLES)


@pytest.fixture
def second_member(world):
    user = make_user("acme-member-2")
    with tenant_context(world.a.org):
        Membership.objects.create(organization=world.a.org, user=user, role=Role.MEMBER)
    return user


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "sessions/{session}/messages/", {"content": "hi"}),
        ("post", "sessions/{session}/activate/", None),
        ("post", "sessions/{session}/end/", None),
        ("patch", "sessions/{session}/", {"name": "taken over"}),
    ],
)
def test_member_cannot_change_another_members_session_but_an_admin_can(
    world, client_for, second_member, method, path, body
):
    url = world.a.url(fill(path, world.a))
    r = getattr(client_for(second_member), method)(url, body, format="json")
    assert_error(r, 403, "PERMISSION_DENIED")
    r = getattr(client_for(world.a.admin), method)(url, body, format="json")
    assert r.status_code < 400, r.content


def test_a_role_change_takes_effect_on_the_next_request(world, client_for):
    c = client_for(world.a.viewer)
    assert_error(
        c.post(world.a.url("sessions/"), {"agent": "helper"}, format="json"), 403, "PERMISSION_DENIED"
    )
    Membership.all_tenants_unsafe.filter(organization=world.a.org, user=world.a.viewer).update(
        role=Role.MEMBER
    )
    assert c.post(world.a.url("sessions/"), {"agent": "helper"}, format="json").status_code == 201


def test_a_role_in_one_organization_gives_nothing_in_another(world, client_for):
    # world.a's owner is nobody in world.b.
    assert_error(client_for(world.a.owner).get(world.b.url("sessions/")), 404, "ORGANIZATION_NOT_FOUND")
