from rest_framework import serializers

from tools_app.models import ToolCall


class ToolCallSerializer(serializers.ModelSerializer):
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, default=None)

    class Meta:
        model = ToolCall
        fields = [
            "id",
            "session",
            "message",
            "run",
            "call_id",
            "tool_name",
            "arguments",
            "status",
            "requires_approval",
            "result",
            "error_code",
            "error_message",
            "decided_by",
            "decided_at",
            "reason",
            "expires_at",
            "started_at",
            "completed_at",
            "created_at",
        ]
        read_only_fields = fields
