"""Serializer fields for references to other rows of the same organization, and a check of JSON input."""

from __future__ import annotations

import uuid

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.json_values import json_unstorable


def storable_json(value) -> None:
    """Validator of JSON input: a NUL character (which PostgreSQL cannot store) or NaN is refused up front,
    naming the field, instead of failing at the database."""
    why = json_unstorable(value)
    if why is not None:
        raise serializers.ValidationError(f"Must not contain {why}.", code="unstorable")


@extend_schema_field(OpenApiTypes.STR)
class TenantRelatedField(serializers.Field):
    """A reference by id (or by ``slug_field``) to a row of the caller's organization.

    Looked up through the model's scoped manager when the request is validated, so another
    organization's row and a missing row give the same error: ``"<what> not found."``.
    """

    default_error_messages = {"not_found": "{what} not found.", "invalid": "Must be an id{slug}."}

    def __init__(self, *, model: type[models.Model], what: str, slug_field: str | None = None, **kwargs):
        self.model = model
        self.what = what
        self.slug_field = slug_field
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, (str, int)) or isinstance(data, bool):
            self.fail("invalid", slug=f" or {self.slug_field}" if self.slug_field else "")
        value = str(data)
        try:
            is_uuid = isinstance(self.model._meta.pk, models.UUIDField)
            lookup = {"pk": uuid.UUID(value) if is_uuid else int(value)}
        except (ValueError, TypeError):
            lookup = {self.slug_field: value} if self.slug_field else None
        obj = self.model.objects.filter(**lookup).first() if lookup else None
        if obj is None:
            self.fail("not_found", what=self.what)
        return obj

    def to_representation(self, value):
        return str(value.pk) if value is not None else None
