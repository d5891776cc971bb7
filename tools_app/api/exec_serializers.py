"""Execution sessions and their executions over REST."""

from __future__ import annotations

from datetime import timedelta

from rest_framework import serializers

from core.api.fields import TenantRelatedField
from sessions_app.models import Session
from tools_app.models import ExecSession, Execution
from tools_app.services.exec_sessions import MAX_CODE_CHARS, MAX_TTL_SECONDS


class ExecSessionSerializer(serializers.ModelSerializer):
    session = serializers.CharField(source="session_id", read_only=True, default=None)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    expires_at = serializers.SerializerMethodField()

    class Meta:
        model = ExecSession
        fields = [
            "id",
            "session",
            "mode",
            "status",
            "created_by",
            "host",
            "pid",
            "sandboxed",
            "execution_count",
            "ttl_seconds",
            "idle_timeout_seconds",
            "stop_reason",
            "started_at",
            "last_used_at",
            "stopped_at",
            "expires_at",
        ]
        read_only_fields = fields

    def get_expires_at(self, obj: ExecSession) -> str | None:
        """When the TTL ends (the idle timeout may end the session earlier)."""
        if obj.started_at is None:
            return None
        expires = obj.started_at + timedelta(seconds=obj.ttl_seconds)
        return serializers.DateTimeField().to_representation(expires)


class ExecSessionStartSerializer(serializers.Serializer):
    mode = serializers.CharField(max_length=20, help_text="shell, python (node when installed).")
    session = TenantRelatedField(
        model=Session, what="Session", required=False, allow_null=True, help_text="Bind to a chat session."
    )
    ttl_seconds = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TTL_SECONDS)
    idle_timeout_seconds = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TTL_SECONDS)


class ExecutionRequestSerializer(serializers.Serializer):
    # Code is sent as is: leading whitespace matters to Python.
    code = serializers.CharField(max_length=MAX_CODE_CHARS, trim_whitespace=False, allow_blank=True)
    timeout = serializers.FloatField(
        required=False,
        help_text="Seconds (default EXEC_DEFAULT_TIMEOUT_SECONDS, at most EXEC_MAX_TIMEOUT_SECONDS).",
    )


class ExecutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Execution
        fields = [
            "id",
            "exec_session",
            "number",
            "code",
            "output",
            "exit_code",
            "timed_out",
            "truncated",
            "context_lost",
            "tool_call",
            "started_at",
            "duration_ms",
        ]
        read_only_fields = fields
