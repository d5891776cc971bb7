"""The history filters: the session list's filters plus last activity, bookmarks and text in the name.

Shared by the history list, search, and many-session exports (which re-apply them in a queue task, where
there is no HTTP request: :class:`FilterRequest` stands in for one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import django_filters
from django.db import models
from django.http import QueryDict

from core.api.filters import UtcIsoDateTimeFilter
from history_app.models import Bookmark
from sessions_app.api.filters import SessionFilter


@dataclass
class FilterRequest:
    """What the filters read from a request: the caller and the query parameters."""

    user: Any
    query_params: QueryDict = field(default_factory=lambda: QueryDict(mutable=True))


def query_dict(filters: dict[str, list[str]]) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, values in filters.items():
        data.setlist(key, [str(v) for v in values])
    return data


class HistoryFilter(SessionFilter):
    active_after = UtcIsoDateTimeFilter(field_name="last_activity_at", lookup_expr="gte")
    active_before = UtcIsoDateTimeFilter(field_name="last_activity_at", lookup_expr="lt")
    has_bookmarks = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false"), ("1", "1"), ("0", "0")],
        method="filter_has_bookmarks",
        help_text="true: sessions the caller has bookmarked; false: the others.",
    )
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains", help_text="Same as q.")

    class Meta(SessionFilter.Meta):
        fields = [*SessionFilter.Meta.fields, "active_after", "active_before", "has_bookmarks", "name"]

    def filter_has_bookmarks(self, qs: models.QuerySet, name: str, value: str) -> models.QuerySet:
        if not value:
            return qs
        user_id = getattr(getattr(self.request, "user", None), "pk", None)
        mine = Bookmark.objects.filter(session=models.OuterRef("pk"), user_id=user_id)
        return qs.filter(models.Exists(mine)) if value in ("true", "1") else qs.exclude(models.Exists(mine))


#: Query parameters that are history filters (anything else in a request is ignored by them).
HISTORY_FILTER_PARAMS = frozenset(HistoryFilter.base_filters)
