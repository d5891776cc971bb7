"""A deleted agent that sessions still use is only deactivated; no new session starts with it."""

from __future__ import annotations

import uuid

import pytest

from core.errors import ErrorCode, SwitchboardError
from core.tenancy import tenant_context
from sessions_app.models import Agent, Session, SessionTemplate
from sessions_app.services.lifecycle import session_create
from tests.support.assertions import assert_error


def _deactivate(world, client_for) -> Agent:
    r = client_for(world.a.admin).delete(world.a.url(f"agents/{world.a.agent.pk}/"))
    assert r.status_code == 204, r.content
    with tenant_context(world.a.org):
        agent = Agent.objects.get(pk=world.a.agent.pk)  # kept: world.a.session uses it
    assert agent.is_active is False
    return agent


def _sessions(world) -> int:
    with tenant_context(world.a.org):
        return Session.objects.count()


@pytest.mark.parametrize("by", ["slug", "id"])
def test_a_deactivated_agent_answers_like_an_unknown_one(world, client_for, by):
    agent = _deactivate(world, client_for)
    c = client_for(world.a.member)
    before = _sessions(world)
    inactive = c.post(world.a.url("sessions/"), {"agent": getattr(agent, "slug" if by == "slug" else "pk")})
    unknown = c.post(
        world.a.url("sessions/"), {"agent": "no-such-agent" if by == "slug" else str(uuid.uuid4())}
    )
    assert assert_error(inactive, 400, "VALIDATION_ERROR")["details"] == {"agent": ["Agent not found."]}
    assert inactive.json() == unknown.json()
    assert _sessions(world) == before


def test_a_template_whose_agent_was_deactivated_starts_no_session(world, client_for):
    with tenant_context(world.a.org):
        template = SessionTemplate.objects.create(organization=world.a.org, name="T", agent=world.a.agent)
    _deactivate(world, client_for)
    c = client_for(world.a.member)
    before = _sessions(world)
    r = c.post(world.a.url("sessions/"), {"template": str(template.pk)}, format="json")
    assert assert_error(r, 400, "VALIDATION_ERROR")["details"] == {"agent": ["Agent not found."]}
    assert _sessions(world) == before
    # Naming an active agent of the organization along with the template still works.
    with tenant_context(world.a.org):
        Agent.objects.create(organization=world.a.org, name="Other", slug="other")
    r = c.post(world.a.url("sessions/"), {"template": str(template.pk), "agent": "other"}, format="json")
    assert r.status_code == 201, r.content


def test_the_service_refuses_an_inactive_agent(world, client_for):
    agent = _deactivate(world, client_for)
    with tenant_context(world.a.org), pytest.raises(SwitchboardError) as refused:
        session_create(organization=world.a.org, agent=agent, owner=world.a.member)
    assert (refused.value.code, refused.value.details) == (
        ErrorCode.VALIDATION_ERROR,
        {"agent": ["Agent not found."]},
    )


def test_existing_sessions_of_a_deactivated_agent_keep_their_history(world, client_for):
    _deactivate(world, client_for)
    r = client_for(world.a.member).get(world.a.url(f"sessions/{world.a.session.pk}/"))
    assert (r.status_code, r.json()["agent"]) == (200, str(world.a.agent.pk))
