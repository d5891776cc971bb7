from __future__ import annotations

import uuid

import django_filters
from django.db import models

from sessions_app.models import RuntimeState, Session, SessionStatus


class SessionFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=SessionStatus.choices)
    runtime_state = django_filters.MultipleChoiceFilter(choices=RuntimeState.choices)
    agent = django_filters.CharFilter(method="filter_agent", help_text="Agent id or slug.")
    tag = django_filters.CharFilter(method="filter_tag", help_text="Tag name; repeat for all of several.")
    owner = django_filters.CharFilter(method="filter_owner", help_text="User id, or `me`.")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
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
        for tag in self.request.query_params.getlist("tag") if self.request else [value]:
            qs = qs.filter(tags__name=tag)
        return qs.distinct()

    def filter_owner(self, qs: models.QuerySet, name: str, value: str) -> models.QuerySet:
        if value == "me":
            return qs.filter(owner_id=getattr(self.request.user, "pk", None))
        return qs.filter(owner_id=value) if value.isdigit() else qs.none()
