"""The API's rate limit: a counter per caller and window, answered with ``429 RATE_LIMITED``."""

from __future__ import annotations

import uuid

import pytest

from core.api.throttling import ApiRateThrottle
from tests.support.assertions import assert_error


@pytest.fixture
def clock(monkeypatch):
    """A clock of the throttle's own, in a window no other test used: [now in seconds]."""
    now = [60.0 * (10**9 + uuid.uuid4().int % 10**9)]
    monkeypatch.setattr(ApiRateThrottle, "timer", staticmethod(lambda: now[0]))
    monkeypatch.setattr(ApiRateThrottle, "rate", "3/min", raising=False)
    return now


def me(tenant) -> str:
    return tenant.url("sessions/")


def test_a_caller_over_the_limit_gets_rate_limited_with_retry_after(world, client_for, clock):
    clock[0] += 15  # a quarter into the window
    member = client_for(world.a.member)
    assert [member.get(me(world.a)).status_code for _ in range(3)] == [200, 200, 200]
    r = member.get(me(world.a))
    assert_error(r, 429, "RATE_LIMITED")
    assert r["Retry-After"] == "46"  # 45 s are left in the window; the header adds a second
    # Another caller has a count of its own.
    assert client_for(world.a.owner).get(me(world.a)).status_code == 200


def test_the_next_window_starts_a_new_count(world, client_for, clock):
    member = client_for(world.a.member)
    assert [member.get(me(world.a)).status_code for _ in range(4)] == [200, 200, 200, 429]
    clock[0] += 60
    assert member.get(me(world.a)).status_code == 200


def test_an_api_key_is_limited_too(world, client_for, clock):
    from core.api_keys import api_key_issue

    secret = api_key_issue(
        organization=world.a.org, name="ci", scopes=["read"], created_by=world.a.member
    ).secret
    program = client_for(key=secret)
    assert [program.get(me(world.a)).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_each_api_key_has_a_count_of_its_own_even_without_a_creator(world, client_for, clock):
    """Keys whose creator was deleted have no user id: they used to share one count across tenants."""
    from core.api_keys import api_key_issue

    def key(tenant, created_by=None) -> str:
        return api_key_issue(
            organization=tenant.org, name="bot", scopes=["read"], created_by=created_by
        ).secret

    orphan_a = client_for(key=key(world.a))
    assert [orphan_a.get(me(world.a)).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert client_for(key=key(world.b)).get(me(world.b)).status_code == 200
    assert client_for(key=key(world.a)).get(me(world.a)).status_code == 200
    # A key of a user is counted apart from that user's own requests.
    member = client_for(world.a.member)
    assert [member.get(me(world.a)).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert client_for(key=key(world.a, created_by=world.a.member)).get(me(world.a)).status_code == 200
