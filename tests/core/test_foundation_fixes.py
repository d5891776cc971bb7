"""Foundation fixes: organization timeouts are bounded so one organization cannot break the scheduled
cleanup for all, and owner changes never leave an organization without an owner."""

from __future__ import annotations

import importlib
import logging
import threading
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from core import services
from core.access import resolve_access
from core.errors import SwitchboardError
from core.models import MAX_APPROVAL_TIMEOUT_SECONDS, MAX_IDLE_TIMEOUT_MINUTES, Membership, Organization, Role
from core.tenancy import tenant_context
from sessions_app.models import Session, SessionStatus
from sessions_app.services import cleanup
from sessions_app.services.lifecycle import session_activate
from tests.support.assertions import assert_error

timeout_bounds_migration = importlib.import_module("core.migrations.0002_organization_timeout_bounds")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("idle_timeout_minutes", 2_000_000_000),
        ("idle_timeout_minutes", MAX_IDLE_TIMEOUT_MINUTES + 1),
        ("idle_timeout_minutes", 0),
        ("approval_timeout_seconds", 10**15),
        ("approval_timeout_seconds", MAX_APPROVAL_TIMEOUT_SECONDS + 1),
        ("approval_timeout_seconds", 0),
    ],
)
def test_timeouts_out_of_bounds_are_refused(world, client_for, field, value):
    r = client_for(world.a.owner).patch(world.a.url(), {field: value}, format="json")
    assert field in assert_error(r, 400, "VALIDATION_ERROR")["details"]
    org = Organization.objects.get(pk=world.a.org.pk)
    assert getattr(org, field) is None
    setattr(org, field, value)  # admin forms validate the model the same way
    with pytest.raises(ValidationError) as raised:
        org.full_clean()
    assert field in raised.value.message_dict


def test_the_longest_timeouts_are_accepted(world, client_for):
    body = {"idle_timeout_minutes": MAX_IDLE_TIMEOUT_MINUTES, "approval_timeout_seconds": 30 * 24 * 3600}
    r = client_for(world.a.owner).patch(world.a.url(), body, format="json")
    assert r.status_code == 200, r.content
    assert (r.json()["idle_timeout_minutes"], r.json()["approval_timeout_seconds"]) == (525600, 2592000)


def _idle_active_session(tenant) -> None:
    with tenant_context(tenant.org):
        session_activate(tenant.session)
        Session.objects.filter(pk=tenant.session.pk).update(
            last_activity_at=timezone.now() - timedelta(hours=2)
        )


def _status(tenant) -> str:
    with tenant_context(tenant.org):
        return Session.objects.get(pk=tenant.session.pk).status


def test_a_timeout_stored_before_the_bounds_does_not_stop_the_cleanup(world):
    # Written past validation, as rows from before the bounds were: acme comes first in the pass.
    Organization.objects.filter(pk=world.a.org.pk).update(idle_timeout_minutes=2_000_000_000)
    _idle_active_session(world.a)
    _idle_active_session(world.b)
    assert cleanup.sessions_cleanup() == {"suspended": 1, "expired": 0}
    assert (_status(world.a), _status(world.b)) == (SessionStatus.ACTIVE, SessionStatus.SUSPENDED)


def test_one_organization_failing_is_logged_and_the_others_are_cleaned_up(world, monkeypatch, caplog):
    real_end = cleanup.session_end

    def end(session, *args):
        if session.organization_id == world.a.org.pk:
            raise RuntimeError("broken row")
        return real_end(session, *args)

    monkeypatch.setattr(cleanup, "session_end", end)
    for tenant in (world.a, world.b):
        with tenant_context(tenant.org):
            Session.objects.filter(pk=tenant.session.pk).update(
                expires_at=timezone.now() - timedelta(seconds=1)
            )
    with caplog.at_level(logging.ERROR, logger=cleanup.logger.name):
        assert cleanup.sessions_cleanup() == {"suspended": 0, "expired": 1}
    assert (_status(world.a), _status(world.b)) == (SessionStatus.CREATED, SessionStatus.ENDED)
    assert "cleanup of organization acme failed" in caplog.text


def test_the_migration_brings_stored_timeouts_inside_the_bounds(world):
    Organization.objects.filter(pk=world.a.org.pk).update(
        idle_timeout_minutes=2_000_000_000, approval_timeout_seconds=10**9
    )
    Organization.objects.filter(pk=world.b.org.pk).update(idle_timeout_minutes=0, approval_timeout_seconds=90)
    timeout_bounds_migration.clamp_timeouts(apps, None)
    rows = dict(Organization.objects.values_list("slug", "idle_timeout_minutes").order_by("slug").iterator())
    assert rows == {"acme": MAX_IDLE_TIMEOUT_MINUTES, "globex": None}
    assert (
        Organization.objects.get(pk=world.a.org.pk).approval_timeout_seconds == MAX_APPROVAL_TIMEOUT_SECONDS
    )
    assert Organization.objects.get(pk=world.b.org.pk).approval_timeout_seconds == 90


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second", ["demote", "remove"])
def test_two_owners_stepping_down_at_once_leave_one_owner(world, monkeypatch, second):
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent writers: SQLite runs one write transaction at a time")
    org = world.a.org
    with tenant_context(org):
        Membership.objects.filter(user=world.a.admin).update(role=Role.OWNER)
        mine, theirs = (Membership.objects.get(user=u) for u in (world.a.owner, world.a.admin))
    # Each counts the owners, then waits for the other to have counted too (or gives up after a while,
    # when the other is held by a lock): without the organization's lock both counted two owners.
    counted = threading.Barrier(2, timeout=3)
    check = services.check_owner_rules

    def check_then_wait(access, membership, new_role):
        check(access, membership, new_role)
        try:
            counted.wait()
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(services, "check_owner_rules", check_then_wait)
    outcomes: dict[str, str] = {}

    def step_down(user, membership, action):
        try:
            with tenant_context(org):
                access = resolve_access(org.slug, user)
                if action == "remove":
                    services.membership_remove(access=access, membership=membership)
                else:
                    services.membership_change_role(access=access, membership=membership, role=Role.MEMBER)
            outcomes[user.username] = "ok"
        except SwitchboardError as refused:
            outcomes[user.username] = refused.code
        finally:
            connection.close()

    threads = [
        threading.Thread(target=step_down, args=(world.a.owner, mine, "demote")),
        threading.Thread(target=step_down, args=(world.a.admin, theirs, second)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes.values()) == ["INVALID_STATE", "ok"], outcomes
    with tenant_context(org):
        assert Membership.objects.filter(role=Role.OWNER).count() == 1
