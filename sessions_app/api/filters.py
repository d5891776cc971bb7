from __future__ import annotations

import uuid

import django_filters
from django.core.exceptions import ValidationError
from django.db import models
from rest_framework import serializers

from core.api.filters import UtcIsoDateTimeFilter
from sessions_app.models import RuntimeState, Session, SessionStatus

# Ids are positive 64-bit integers at most; a larger number would overflow SQLite's driver.
MAX_ID = 2**63 - 1


def validate_owner(value: str) -> None:
    """A number must be an id: ASCII digits (``str.isdigit`` takes "²" too) within range. Other text is a
    name of nobody, which matches no session."""
    if value.isdigit() and not (value.isascii() and len(value) <= 19 and int(value) <= MAX_ID):
        raise ValidationError("Must be a user id or `me`.", code="invalid")


class SessionFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=SessionStatus.choices)
    runtime_state = django_filters.MultipleChoiceFilter(choices=RuntimeState.choices)
    agent = django_filters.CharFilter(method="filter_agent", help_text="Agent id or slug.")
    tag = django_filters.CharFilter(method="filter_tag", help_text="Tag name; repeat for all of several.")
    owner = django_filters.CharFilter(
        method="filter_owner", validators=[validate_owner], help_text="User id, or `me`."
    )
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", help_text="Text in the name.")

    class Meta:
        model = Session
        fields = ["status", "runtime_state", "agent", "tag", "owner", "created_after", "created_before", "q"]

    def filter_agent(self, qs: models.QuerySet, name: str, value: str) -> models.QuerySet:
        try:
            return qs.filter(agent_id=uuid.UUID(value))
        except ValueError:
            return qs.filter(agent__slug=value)

    def filter_tag(self, qs: models.QuerySet, name: str, value: str) -> models.QuerySet:
        tags = self.request.query_params.getlist("tag") if self.request else [value]
        if any("\x00" in tag for tag in tags):  # the form field checked only the last one
            raise serializers.ValidationError({"tag": ["Null characters are not allowed."]})
        for tag in tags:
            qs = qs.filter(tags__name=tag)
        return qs.distinct()

    def filter_owner(self, qs: models.QuerySet, name: str, value: str) -> models.QuerySet:
        if value == "me":
            # A key whose creator is gone is nobody: "me" is no one's sessions, not every ownerless one.
            me = getattr(self.request.user, "pk", None)
            return qs.filter(owner_id=me) if me is not None else qs.none()
        return qs.filter(owner_id=int(value)) if value.isdigit() else qs.none()  # validate_owner: ASCII
