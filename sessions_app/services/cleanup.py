"""Scheduled cleanup: idle sessions are suspended, sessions past ``expires_at`` end as ``expired``."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.errors import SwitchboardError
from core.models import Organization
from core.tenancy import tenant_context
from sessions_app.models import RUN_ACTIVE_STATUSES, EndedReason, Run, Session, SessionStatus
from sessions_app.services.lifecycle import session_end, session_suspend

logger = logging.getLogger(__name__)


def sessions_cleanup() -> dict[str, int]:
    """Suspend sessions idle past their organization's timeout; end expired ones. Every organization."""
    now = timezone.now()
    counts = {"suspended": 0, "expired": 0}
    for organization in Organization.objects.all():
        minutes = organization.idle_timeout_minutes or settings.SESSION_IDLE_TIMEOUT_MINUTES
        with tenant_context(organization):
            busy = Run.objects.filter(status__in=RUN_ACTIVE_STATUSES).values("session_id")
            for session in Session.objects.exclude(status=SessionStatus.ENDED).filter(expires_at__lte=now):
                counts["expired"] += _apply(session_end, session, EndedReason.EXPIRED)
            idle = (
                Session.objects.filter(status=SessionStatus.ACTIVE)
                .filter(Q(last_activity_at__lt=now - timedelta(minutes=minutes)))
                .exclude(pk__in=busy)
            )
            for session in idle:
                counts["suspended"] += _apply(session_suspend, session)
    return counts


def _apply(transition, session: Session, *args) -> int:
    try:
        transition(session, *args)
        return 1
    except SwitchboardError as exc:  # it changed state meanwhile; the next pass will see it
        logger.info("cleanup skipped session %s: %s", session.pk, exc.message)
        return 0
