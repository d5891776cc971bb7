"""Bookmarks: a person's private marks on sessions and messages."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from core.tenancy import TenantOwnedModel


class Bookmark(TenantOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bookmarks")
    session = models.ForeignKey("sessions_app.Session", on_delete=models.CASCADE, related_name="bookmarks")
    message = models.ForeignKey(
        "sessions_app.Message", on_delete=models.CASCADE, null=True, blank=True, related_name="bookmarks"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "user", "-created_at"], name="bookmark_org_user")]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user", "session", "message"], name="bookmark_unique_target"
            ),
        ]

    def __str__(self) -> str:
        return f"Bookmark by {self.user_id} on {self.session_id}"
