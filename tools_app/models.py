"""Tool calls: what an agent (or a person) asked a tool to do, and the decision about it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from core.tenancy import TenantOwnedModel


class ToolCallStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class ToolCall(TenantOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey("sessions_app.Session", on_delete=models.CASCADE, related_name="tool_calls")
    message = models.ForeignKey(
        "sessions_app.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tool_calls",
        help_text="The assistant message that asked for the call.",
    )
    run = models.ForeignKey(
        "sessions_app.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="tool_calls"
    )
    call_id = models.CharField(max_length=100, blank=True, help_text="The model's id for the call.")
    tool_name = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict, blank=True)
    arguments_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=ToolCallStatus.choices, default=ToolCallStatus.PENDING)
    requires_approval = models.BooleanField(default=False)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    approved_hash = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["organization", "status", "-created_at"], name="toolcall_org_status"),
            models.Index(fields=["organization", "session"], name="toolcall_org_session"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"
