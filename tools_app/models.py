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
    call_id = models.TextField(blank=True, help_text="The model's id for the call (any length).")
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


class ToolPolicyChoice(models.TextChoices):
    AUTO = "auto", "Run without asking"
    MANUAL = "manual", "Ask a person first"
    DENY = "deny", "Never run"


class ToolPolicy(TenantOwnedModel):
    """An organization's setting for one tool: enabled or not, and its approval policy."""

    tool_name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    policy = models.CharField(
        max_length=10,
        choices=ToolPolicyChoice.choices,
        blank=True,
        help_text="Empty: the tool's default policy.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tool_name"]
        verbose_name_plural = "tool policies"
        constraints = [
            models.UniqueConstraint(fields=["organization", "tool_name"], name="toolpolicy_unique")
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}: {'on' if self.enabled else 'off'} {self.policy or 'default'}"


class ExecSessionStatus(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class ExecSession(TenantOwnedModel):
    """A persistent execution context (shell, python, node) running in a sandbox."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(
        "sessions_app.Session",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="exec_sessions",
        help_text="The chat session whose python/shell tools use this context.",
    )
    mode = models.CharField(max_length=20)
    status = models.CharField(
        max_length=10, choices=ExecSessionStatus.choices, default=ExecSessionStatus.RUNNING
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    workdir = models.CharField(max_length=500, blank=True)
    host = models.CharField(max_length=120, blank=True, help_text="Host and process that own the sandbox.")
    pid = models.PositiveIntegerField(null=True, blank=True)
    sandboxed = models.BooleanField(default=True)
    execution_count = models.PositiveIntegerField(default=0)
    ttl_seconds = models.PositiveIntegerField(default=3600)
    idle_timeout_seconds = models.PositiveIntegerField(default=900)
    stop_reason = models.CharField(max_length=40, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["organization", "status"], name="execsession_org_status")]

    def __str__(self) -> str:
        return f"{self.mode} {str(self.id)[:8]} ({self.status})"


class Execution(TenantOwnedModel):
    """One execution in an execution session: input, output, exit status, timings."""

    exec_session = models.ForeignKey(ExecSession, on_delete=models.CASCADE, related_name="executions")
    number = models.PositiveIntegerField()
    code = models.TextField()
    output = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    timed_out = models.BooleanField(default=False)
    truncated = models.BooleanField(default=False)
    context_lost = models.BooleanField(
        default=False, help_text="The interpreter was killed during this execution; its state was reset."
    )
    tool_call = models.ForeignKey(
        ToolCall, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["exec_session", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "exec_session", "number"], name="execution_unique_num"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.number} in {self.exec_session_id}"
