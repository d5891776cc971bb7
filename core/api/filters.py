"""Filter fields shared by the API's filter sets."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, in UTC; one that is not a date-time in UTC (an offset pushes it past year
    9999 or before year 1, which SQLite's driver cannot convert) is a validation error, not a 500."""

    default_error_messages = {"out_of_range": "The date-time is out of range."}

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError(self.error_messages["out_of_range"], code="out_of_range")


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
