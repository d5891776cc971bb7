"""Tool calls over REST (reading): the organization's calls, filters, and tenant isolation."""

from __future__ import annotations

import uuid

import pytest

from core.tenancy import tenant_context
from sessions_app.services.lifecycle import session_create
from tests.support.assertions import assert_error
from tools_app.models import ToolCall


def make_call(tenant, session=None, **fields) -> ToolCall:
    with tenant_context(tenant.org):
        return ToolCall.objects.create(
            organization=tenant.org,
            session=session or tenant.session,
            tool_name=fields.pop("tool_name", "calculator"),
            arguments=fields.pop("arguments", {"expression": "1+1"}),
            **fields,
        )


@pytest.fixture
def calls(world):
    with tenant_context(world.a.org):
        second = session_create(organization=world.a.org, agent=world.a.agent, owner=world.a.admin)
    return {
        "pending": make_call(world.a, status="pending", requires_approval=True),
        "completed": make_call(world.a, status="completed", result={"value": 2}),
        "other_session": make_call(world.a, session=second, tool_name="clock", status="failed"),
        "foreign": make_call(world.b, status="pending", requires_approval=True),
    }


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_list_shows_only_this_organizations_calls(world, client_for, calls):
    r = client_for(world.a.viewer).get(world.a.url("tool-calls/"))
    assert ids(r) == {str(calls[k].pk) for k in ("pending", "completed", "other_session")}
    r = client_for(world.b.viewer).get(world.b.url("tool-calls/"))
    assert ids(r) == {str(calls["foreign"].pk)}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=pending", {"pending"}),
        ("status=completed", {"completed"}),
        ("tool_name=clock", {"other_session"}),
        ("requires_approval=true", {"pending"}),
    ],
)
def test_filters(world, client_for, calls, query, expected):
    r = client_for(world.a.viewer).get(world.a.url(f"tool-calls/?{query}"))
    assert ids(r) == {str(calls[k].pk) for k in expected}


def test_filter_by_session(world, client_for, calls):
    r = client_for(world.a.viewer).get(world.a.url(f"tool-calls/?session={world.a.session.pk}"))
    assert ids(r) == {str(calls["pending"].pk), str(calls["completed"].pk)}


def test_filter_by_a_foreign_session_reveals_nothing(world, client_for, calls):
    c = client_for(world.a.viewer)
    foreign = c.get(world.a.url(f"tool-calls/?session={world.b.session.pk}"))
    missing = c.get(world.a.url(f"tool-calls/?session={uuid.uuid4()}"))
    assert "session" in assert_error(foreign, 400, "VALIDATION_ERROR")["details"]
    assert foreign.json() == missing.json()


def test_retrieve(world, client_for, calls):
    r = client_for(world.a.viewer).get(world.a.url(f"tool-calls/{calls['completed'].pk}/"))
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["tool_name"], body["status"], body["result"]) == ("calculator", "completed", {"value": 2})
    assert body["arguments"] == {"expression": "1+1"}
    assert body["session"] == str(world.a.session.pk)


def test_foreign_call_is_the_same_404_as_missing(world, client_for, calls):
    c = client_for(world.a.owner)
    foreign = c.get(world.a.url(f"tool-calls/{calls['foreign'].pk}/"))
    missing = c.get(world.a.url(f"tool-calls/{uuid.uuid4()}/"))
    assert_error(foreign, 404, "TOOL_CALL_NOT_FOUND")
    assert foreign.json() == missing.json()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_tool_calls_are_not_edited_over_rest(world, client_for, calls, method):
    r = getattr(client_for(world.a.owner), method)(
        world.a.url(f"tool-calls/{calls['pending'].pk}/"), {"status": "approved"}, format="json"
    )
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert ToolCall.all_tenants_unsafe.get(pk=calls["pending"].pk).status == "pending"


def test_tool_calls_are_not_created_over_the_list(world, client_for):
    r = client_for(world.a.owner).post(
        world.a.url("tool-calls/"),
        {"session": str(world.a.session.pk), "tool_name": "calculator"},
        format="json",
    )
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
