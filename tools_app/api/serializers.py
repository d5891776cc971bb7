from rest_framework import serializers

from tools_app.models import ToolCall, ToolPolicy, ToolPolicyChoice


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


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class DirectTaskSerializer(serializers.Serializer):
    tool = serializers.CharField(max_length=100)
    arguments = serializers.JSONField(required=False)


class ToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    parameters = serializers.JSONField()
    timeout = serializers.FloatField()
    side_effect = serializers.CharField()
    default_policy = serializers.CharField()
    enabled = serializers.BooleanField()
    policy = serializers.CharField()


class ToolPolicySerializer(serializers.ModelSerializer):
    policy = serializers.ChoiceField(
        choices=[("", "default"), *ToolPolicyChoice.choices], required=False, allow_blank=True
    )

    class Meta:
        model = ToolPolicy
        fields = ["id", "tool_name", "enabled", "policy", "updated_at"]
        read_only_fields = ["id", "updated_at"]
        validators = []
