"""Cursor pagination: stable pages over lists that grow while a client reads them.

DRF's cursor keeps the first ordering field's value of a page's last row and filters the next page by it.
Two things break that, and :class:`StableCursorPagination` mends both:

- A null value (a session's ``ended_at`` before it ends) became the position ``"None"``, which no filter
  accepts: the next page was a 400 and the rows after it were out of reach. A nullable date or date-time
  is ordered (and positioned) as its value or, when null, the earliest there is: never-set rows come
  first oldest-first and last newest-first, on every database alike.
- Rows that tie on the ordering are told apart by an offset, which needs the same order among them on
  every query: the primary key is added as the last ordering field.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.functions import Coalesce
from rest_framework.pagination import CursorPagination

# What a null is ordered as, by field type (date-time before date: it is a subclass).
_NULL_AS: list[tuple[type[models.Field], object]] = [
    (models.DateTimeField, datetime(1, 1, 1, tzinfo=UTC)),
    (models.DateField, date(1, 1, 1)),
]


class StableCursorPagination(CursorPagination):
    page_size_query_param = "page_size"

    def paginate_queryset(self, queryset, request, view=None):
        self._stable_ordering = None
        if isinstance(queryset, models.QuerySet):
            ordering = super().get_ordering(request, queryset, view)
            queryset, self._stable_ordering = self._stabilize(queryset, list(ordering))
        return super().paginate_queryset(queryset, request, view)

    def get_ordering(self, request, queryset, view):
        if getattr(self, "_stable_ordering", None) is not None:
            return self._stable_ordering
        return super().get_ordering(request, queryset, view)

    def _stabilize(self, queryset: models.QuerySet, ordering: list[str]) -> tuple[models.QuerySet, tuple]:
        opts = queryset.model._meta
        first = ordering[0]
        descending, name = first.startswith("-"), first.lstrip("-")
        try:
            field = opts.pk if name == "pk" else opts.get_field(name)
        except FieldDoesNotExist:  # an annotation: the view's business
            field = None
        if field is not None and field.null:
            kind, null_as = next(((k, v) for k, v in _NULL_AS if isinstance(field, k)), (None, None))
            if kind is not None:
                position = f"cursor_{name}"
                queryset = queryset.annotate(
                    **{position: Coalesce(name, models.Value(null_as, output_field=kind()))}
                )
                ordering[0] = f"-{position}" if descending else position
        if not {"pk", opts.pk.name} & {entry.lstrip("-") for entry in ordering}:
            ordering.append("-pk" if descending else "pk")
        return queryset, tuple(ordering)


class DefaultCursorPagination(StableCursorPagination):
    ordering = "-created_at"
    max_page_size = 200


class SeqCursorPagination(StableCursorPagination):
    """Oldest first by per-session ``seq``, for messages."""

    ordering = "seq"
    max_page_size = 500
