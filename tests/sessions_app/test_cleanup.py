"""Scheduled cleanup: idle sessions are suspended, expired sessions end and then refuse input."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from core.tenancy import tenant_context
from sessions_app.models import EndedReason, Run, Session, SessionEvent, SessionStatus
from sessions_app.services.cleanup import sessions_cleanup
from sessions_app.services.lifecycle import session_activate
from tests.support.assertions import assert_error


def _age(tenant, **fields):
    with tenant_context(tenant.org):
        Session.objects.filter(pk=tenant.session.pk).update(**fields)


def test_idle_sessions_are_suspended_per_organization_timeout(world):
    world.a.org.idle_timeout_minutes = 10
    world.a.org.save()
    for tenant in (world.a, world.b):
        with tenant_context(tenant.org):
            session_activate(tenant.session)
        _age(tenant, last_activity_at=timezone.now() - timedelta(minutes=30))
    counts = sessions_cleanup()
    with tenant_context(world.a.org):
        assert Session.objects.get(pk=world.a.session.pk).status == SessionStatus.SUSPENDED
        assert SessionEvent.objects.filter(session=world.a.session, type="session.suspended").exists()
    with tenant_context(world.b.org):  # the server default (60 minutes) applies to the other organization
        assert Session.objects.get(pk=world.b.session.pk).status == SessionStatus.ACTIVE
    assert counts == {"suspended": 1, "expired": 0}


def test_busy_sessions_are_not_suspended(world):
    with tenant_context(world.a.org):
        session_activate(world.a.session)
        Run.objects.create(organization=world.a.org, session=world.a.session)
    _age(world.a, last_activity_at=timezone.now() - timedelta(days=1))
    sessions_cleanup()
    with tenant_context(world.a.org):
        assert Session.objects.get(pk=world.a.session.pk).status == SessionStatus.ACTIVE


def test_expired_sessions_end_and_refuse_messages(world, client_for):
    _age(world.a, expires_at=timezone.now() - timedelta(seconds=1))
    assert sessions_cleanup()["expired"] == 1
    with tenant_context(world.a.org):
        session = Session.objects.get(pk=world.a.session.pk)
    assert (session.status, session.ended_reason) == (SessionStatus.ENDED, EndedReason.EXPIRED)
    response = client_for(world.a.member).post(
        world.a.url(f"sessions/{session.pk}/messages/"), {"content": "still there?"}, format="json"
    )
    assert_error(response, 410, "SESSION_EXPIRED")
