"""Reads of the sessions app. Every function runs inside a tenant context."""

from __future__ import annotations

from django.db import models

from core.errors import ErrorCode, SwitchboardError
from sessions_app.models import SessionEvent, SessionTemplate, Tag


def visible_tags() -> models.QuerySet[Tag]:
    """The organization's tags plus the system presets it has not copied."""
    copied = Tag.objects.filter(organization__isnull=False, source__isnull=False).values("source_id")
    return Tag.objects.exclude(pk__in=copied)


def visible_templates() -> models.QuerySet[SessionTemplate]:
    copied = SessionTemplate.objects.filter(organization__isnull=False, source__isnull=False).values(
        "source_id"
    )
    return SessionTemplate.objects.exclude(pk__in=copied)


def tags_by_name(names: list[str], *, missing_ok: bool = False) -> list[Tag]:
    """Resolve tag names, the organization's own before presets; unknown names are ``VALIDATION_ERROR``
    (or left out with ``missing_ok``)."""
    found: dict[str, Tag] = {}
    for tag in visible_tags().filter(name__in=names):
        if tag.name not in found or tag.organization_id is not None:
            found[tag.name] = tag
    missing = [n for n in names if n not in found]
    if missing_ok:
        return [found[n] for n in dict.fromkeys(names) if n in found]
    if missing:
        raise SwitchboardError(
            ErrorCode.VALIDATION_ERROR, "Unknown tags.", {"tags": [f"Tag not found: {n}" for n in missing]}
        )
    return [found[n] for n in dict.fromkeys(names)]


def session_events_after(session, after: int = 0, limit: int = 500) -> list[SessionEvent]:
    return list(SessionEvent.objects.filter(session=session, seq__gt=after).order_by("seq")[:limit])
